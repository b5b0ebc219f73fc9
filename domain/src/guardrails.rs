//! Channel guardrails: what an offer is checked against before a marketer sees it.
//!
//! Small models wrap an offer in chatter ("Конечно! Вот текст сообщения:", quotes, a code fence,
//! "Надеюсь, это поможет!"). Removing that chatter is the only change ever made to the model's
//! answer, and it is flagged. Everything else that breaks a rule is a flag for the marketer to
//! judge, never a fix: a cut or reworded offer would be neither what the model wrote nor what a
//! person approved. The cleaned text is always one contiguous piece of the answer.
//!
//! The flags are stable strings, stored with the message and shown by the API:
//!
//! | flag | meaning |
//! |---|---|
//! | `boilerplate_removed` | chatter around the offer was removed (whitespace at the ends does not count) |
//! | `empty` | nothing is left of the answer |
//! | `too_long:<chars>/<max>` | the cleaned offer has `<chars>` characters (Unicode scalar values), over the channel's `<max>` |
//! | `banned_phrase:<phrase>` | the offer contains the project's banned `<phrase>` (as configured), once per phrase |
//! | `not_russian` | under a third of the offer's letters are Cyrillic (links and e-mail addresses not counted): the instruction asks for Russian |
//!
//! The order is the table's, banned phrases in the project's order.

/// What a channel's offers are checked against: the project channel's length limit and the
/// project's banned phrases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelRules {
    /// The length limit in characters; `None` for none.
    pub max_chars: Option<u32>,
    pub banned_phrases: Vec<String>,
}

/// The model's answer as the marketer gets it: cleaned of boilerplate, with what it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewedOffer {
    pub text: String,
    pub flags: Vec<String>,
}

pub const BOILERPLATE_REMOVED: &str = "boilerplate_removed";
pub const EMPTY: &str = "empty";
/// Prefix of `too_long:<chars>/<max>`.
pub const TOO_LONG: &str = "too_long";
/// Prefix of `banned_phrase:<phrase>`.
pub const BANNED_PHRASE: &str = "banned_phrase";
pub const NOT_RUSSIAN: &str = "not_russian";

/// Length limits of the seeded catalog channels. A Cyrillic SMS segment holds 70 characters, so
/// 160 is a three-part SMS; projects that pay per segment lower it. E-mail, the call-centre
/// script (TMO) and the courier's script (KND) are long by nature and have none.
pub const DEFAULT_MAX_CHARS: &[(&str, u32)] = &[
    ("SMS", 160),
    ("PUSH", 120),
    ("MOB_BANNER", 90),
    ("OFFICE_BANNER", 250),
    ("MOBILE_CHAT", 500),
];

/// The default length limit of a catalog channel by its key; `None` for no limit.
pub fn default_max_chars(channel_key: &str) -> Option<u32> {
    let key = channel_key.trim();
    DEFAULT_MAX_CHARS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, max)| *max)
}

/// Cleans the model's raw answer of boilerplate and flags what breaks the rules.
pub fn review_offer(raw: &str, rules: &ChannelRules) -> ReviewedOffer {
    let trimmed = raw.trim();
    let text = strip_boilerplate(trimmed);
    let mut flags = Vec::new();
    if text.len() != trimmed.len() {
        flags.push(BOILERPLATE_REMOVED.to_string());
    }
    if text.is_empty() {
        flags.push(EMPTY.to_string());
        return ReviewedOffer {
            text: String::new(),
            flags,
        };
    }
    if let Some(max) = rules.max_chars {
        let chars = text.chars().count();
        if chars > max as usize {
            flags.push(format!("{TOO_LONG}:{chars}/{max}"));
        }
    }
    let folded = fold(text);
    for phrase in &rules.banned_phrases {
        let flag = format!("{BANNED_PHRASE}:{phrase}");
        if contains_phrase(&folded, &fold(phrase)) && !flags.contains(&flag) {
            flags.push(flag);
        }
    }
    if !mostly_cyrillic(text) {
        flags.push(NOT_RUSSIAN.to_string());
    }
    ReviewedOffer {
        text: text.to_string(),
        flags,
    }
}

/// How phrases are compared: lower case, `ё` as `е`, each run of white space as one space, none
/// at the ends. Two banned phrases with the same key are the same phrase.
pub(crate) fn phrase_key(phrase: &str) -> String {
    fold(phrase).into_iter().collect()
}

fn fold(text: &str) -> Vec<char> {
    let mut out = Vec::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.extend(c.to_lowercase().map(|l| if l == 'ё' { 'е' } else { l }));
    }
    out
}

/// Whether `phrase` occurs in `text` (both folded) as a whole: a phrase that starts or ends with
/// a letter or digit does not match inside a longer word ("гарант" is not in "гарантия").
fn contains_phrase(text: &[char], phrase: &[char]) -> bool {
    let (Some(first), Some(last)) = (phrase.first(), phrase.last()) else {
        return false;
    };
    if phrase.len() > text.len() {
        return false;
    }
    (0..=text.len() - phrase.len()).any(|start| {
        let end = start + phrase.len();
        text[start..end] == *phrase
            && (!first.is_alphanumeric() || start == 0 || !text[start - 1].is_alphanumeric())
            && (!last.is_alphanumeric() || end == text.len() || !text[end].is_alphanumeric())
    })
}

fn mostly_cyrillic(text: &str) -> bool {
    let (mut letters, mut cyrillic) = (0usize, 0usize);
    let words = text
        .split_whitespace()
        .filter(|w| !(w.contains("://") || w.contains('@') || w.to_lowercase().contains("www.")));
    for c in words.flat_map(str::chars).filter(|c| c.is_alphabetic()) {
        letters += 1;
        if matches!(c, '\u{0400}'..='\u{052F}' | '\u{1C80}'..='\u{1C8F}' | '\u{2DE0}'..='\u{2DFF}' | '\u{A640}'..='\u{A69F}')
        {
            cyrillic += 1;
        }
    }
    cyrillic * 3 >= letters && cyrillic > 0
}

// ---------------------------------------------------------------------------------------------
// Boilerplate
// ---------------------------------------------------------------------------------------------

/// Enough for every layer a model stacks (a greeting, a label, a fence, quotes, an afterword)
/// while bounding the work on hostile input.
const MAX_LAYERS: usize = 16;

/// Peels boilerplate off both ends, one layer at a time, until none is left. Only ever returns a
/// slice of `text`, so nothing inside the offer can change.
fn strip_boilerplate(text: &str) -> &str {
    let mut text = text.trim();
    for _ in 0..MAX_LAYERS {
        let next = strip_fence(text)
            .or_else(|| strip_leading(text))
            .or_else(|| strip_trailing(text))
            .or_else(|| strip_quotes(text))
            .map(str::trim);
        match next {
            Some(next) if next.len() < text.len() => text = next,
            _ => break,
        }
    }
    text
}

/// The first line (without its line break) and everything after it.
fn first_line(text: &str) -> (&str, &str) {
    match text.find('\n') {
        Some(i) => (text[..i].trim_end_matches('\r'), &text[i + 1..]),
        None => (text, ""),
    }
}

/// Everything before the last line, and the last line.
fn last_line(text: &str) -> (&str, &str) {
    match text.rfind('\n') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => ("", text),
    }
}

fn strip_fence(text: &str) -> Option<&str> {
    let (first, rest) = first_line(text);
    if first.starts_with("```") {
        if rest.is_empty() && first.len() > 6 && first.ends_with("```") {
            return Some(&first[3..first.len() - 3]);
        }
        // "```text" or "```markdown": the opening line goes whole.
        if !rest.is_empty() || first.trim_end() == "```" {
            return Some(rest);
        }
    }
    let (before, last) = last_line(text);
    (last.trim() == "```").then_some(before)
}

/// A markdown horizontal rule: `---`, `***`, `___`, `* * *`.
fn is_rule(line: &str) -> bool {
    let marks: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    marks.chars().count() >= 3
        && ['-', '*', '_', '=']
            .iter()
            .any(|m| marks.chars().all(|c| c == *m))
}

fn strip_leading(text: &str) -> Option<&str> {
    let (first, rest) = first_line(text);
    if is_rule(first) {
        return Some(rest);
    }
    strip_courtesy(text).or_else(|| strip_intro(text, false))
}

/// Assistant courtesies an answer opens with. The strong ones never start a bank's offer, so a
/// sentence of only that goes; the weak ones ("Отлично!") might, so they go only before an
/// introduction.
const COURTESIES: &[(&str, bool)] = &[
    ("конечно", true),
    ("разумеется", true),
    ("безусловно", true),
    ("с удовольствием", true),
    ("sure thing", true),
    ("sure", true),
    ("certainly", true),
    ("of course", true),
    ("absolutely", true),
    ("хорошо", false),
    ("отлично", false),
    ("да", false),
    ("okay", false),
    ("ok", false),
    ("great", false),
];

fn strip_courtesy(text: &str) -> Option<&str> {
    let (end, strong) = COURTESIES
        .iter()
        .find_map(|(word, strong)| starts_with_word(text, word).map(|end| (end, *strong)))?;
    let after = &text[end..];
    let spaced = after.trim_start_matches(['!', '.', ',', '…']);
    let terminal = after[..after.len() - spaced.len()].contains(['!', '.', '…']);
    let rest = spaced.trim_start();
    // "Конечно!" alone is the whole answer; "Конечно-конечно" is no courtesy.
    if rest.is_empty() || rest.len() == spaced.len() {
        return None;
    }
    let new_line = spaced[..spaced.len() - rest.len()].contains('\n');
    if let Some(after_intro) = strip_courtesy(rest).or_else(|| strip_intro(rest, true)) {
        return Some(after_intro);
    }
    (strong && (terminal || new_line)).then_some(rest)
}

/// The byte length of `word` at the start of `text`, compared case-insensitively, when a whole
/// word (or words) stands there.
fn starts_with_word(text: &str, word: &str) -> Option<usize> {
    let mut chars = text.char_indices();
    for expected in word.chars() {
        let (_, c) = chars.next()?;
        if !c.to_lowercase().eq(std::iter::once(expected)) {
            return None;
        }
    }
    match chars.next() {
        Some((i, c)) if !c.is_alphanumeric() => Some(i),
        None => Some(text.len()),
        _ => None,
    }
}

/// Strips an introduction ("Вот текст сообщения для клиента:") or a label ("**SMS:**",
/// "### Текст push-уведомления") off the start. `polite`: it followed a courtesy, which makes it
/// the assistant speaking even when it says "your" to the marketer.
fn strip_intro(text: &str, polite: bool) -> Option<&str> {
    let (first, rest) = first_line(text);
    if let Some(colon) = first.find(':') {
        let raw_lead = &first[..colon];
        let lead = unmark(raw_lead);
        let mut after = &text[colon + 1..];
        // The closing half of "**SMS:**".
        for mark in ["**", "__", "*", "_"] {
            if raw_lead.trim_start().starts_with(mark) {
                if let Some(stripped) = after.strip_prefix(mark) {
                    after = stripped;
                    break;
                }
            }
        }
        let own_line = unmark(first_line(after).0).is_empty();
        return (is_label(lead, own_line) || is_intro(lead, polite, own_line)).then_some(after);
    }
    if rest.trim().is_empty() {
        return None;
    }
    let lead = unmark(first.trim_end().trim_end_matches('.'));
    (is_label(lead, true) || is_intro(lead, polite, true)).then_some(rest)
}

/// The words of a lead without markdown, brackets and bullets around them.
fn unmark(text: &str) -> &str {
    text.trim_matches(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '*' | '_' | '#' | '>' | '`' | '-' | '•' | '[' | ']' | '(' | ')'
            )
    })
}

/// Lower-case words (letters and digits), `ё` as `е`.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase().replace('ё', "е"))
        .collect()
}

/// A vocabulary entry: `"текст*"` matches words starting with `текст`, others match exactly.
fn in_vocabulary(word: &str, vocabulary: &[&str]) -> bool {
    vocabulary
        .iter()
        .any(|entry| match entry.strip_suffix('*') {
            Some(stem) => word.starts_with(stem),
            None => word == *entry,
        })
}

/// Nouns that name the text itself: a lead made of them is about the offer, not part of it.
const TEXT_NOUNS: &[&str] = &[
    "текст*",
    "сообщени*",
    "смс*",
    "sms",
    "пуш",
    "push",
    "уведомлени*",
    "письм*",
    "email*",
    "mail",
    "имейл*",
    "емейл*",
    "емэйл*",
    "баннер*",
    "скрипт*",
    "рассылк*",
    "message*",
    "text",
    "notification*",
    "banner*",
    "script*",
    "draft*",
    "assistant",
    "ассистент",
];

/// Nouns that name the text only in an assistant's mouth: "Вот предложение, от которого
/// невозможно отказаться" is an offer, "Вот маркетинговое предложение для клиента:" is not.
const OFFER_NOUNS: &[&str] = &[
    "предложени*",
    "вариант*",
    "ответ*",
    "оффер*",
    "offer*",
    "response*",
    "answer*",
    "proposal*",
    "option*",
    "version*",
];

/// Words that show the speaker is writing for someone else about the client.
const CONTEXT_WORDS: &[&str] = &[
    "клиент*",
    "маркетингов*",
    "рекламн*",
    "персонализированн*",
    "client*",
    "customer*",
    "marketing",
    "personali*",
    "promotional",
];

/// Other words a label may hold ("Итоговый текст SMS для клиента 1").
const LABEL_WORDS: &[&str] = &[
    "для",
    "в",
    "во",
    "на",
    "по",
    "и",
    "e",
    "the",
    "a",
    "an",
    "for",
    "канал*",
    "мобильн*",
    "приложени*",
    "итогов*",
    "готов*",
    "сгенерированн*",
    "финальн*",
    "окончательн*",
    "пример*",
    "кратк*",
    "коротк*",
    "сокращенн*",
    "нов*",
    "улучшенн*",
    "исправленн*",
    "final",
    "short*",
    "revised",
    "improved",
    "updated",
    "sample",
    "example",
    "new",
];

/// The first word of an introduction.
const OPENERS: &[&str] = &[
    "вот",
    "ниже",
    "представляю",
    "предлагаю",
    "подготовил",
    "подготовила",
    "составил",
    "составила",
    "написал",
    "написала",
    "держите",
    "это",
    "я",
    "here",
    "below",
    "this",
    "i",
];

/// Addressing someone: an introduction that does ("Вот ваше персональное предложение:") is
/// the bank talking to the client, unless an assistant's courtesy came first or it names the
/// text itself ("Вот ваш текст:", which no bank says to a client).
const SECOND_PERSON: &[&str] = &[
    "вы",
    "вас",
    "вам",
    "вами",
    "ваш",
    "ваша",
    "ваше",
    "ваши",
    "вашего",
    "вашей",
    "вашему",
    "вашим",
    "ваших",
    "вашу",
    "ты",
    "тебя",
    "тебе",
    "твой",
    "твоя",
    "твое",
    "твои",
    "you",
    "your",
    "yours",
];

fn is_label(lead: &str, own_line: bool) -> bool {
    if lead.chars().count() > 60 {
        return false;
    }
    let words = words(lead);
    let (mut text_noun, mut offer_noun) = (false, false);
    for word in &words {
        if in_vocabulary(word, TEXT_NOUNS) {
            text_noun = true;
        } else if in_vocabulary(word, OFFER_NOUNS) {
            offer_noun = true;
        } else if !(in_vocabulary(word, LABEL_WORDS)
            || in_vocabulary(word, CONTEXT_WORDS)
            || word.chars().all(|c| c.is_numeric()))
        {
            return false;
        }
    }
    // "Предложение:" on a line of its own labels what follows; "Предложение: кредит под 5 %"
    // may be the offer.
    text_noun || offer_noun && own_line
}

fn is_intro(lead: &str, polite: bool, own_line: bool) -> bool {
    // One sentence only: "Вот это предложение! Только сегодня: …" is the offer.
    if lead.chars().count() > 200 || lead.contains(['.', '!', '?']) {
        return false;
    }
    let words = words(lead);
    if !words.first().is_some_and(|w| OPENERS.contains(&w.as_str())) {
        return false;
    }
    let any = |vocabulary: &[&str]| words.iter().any(|w| in_vocabulary(w, vocabulary));
    if any(TEXT_NOUNS) {
        return true;
    }
    let addressed = words.iter().any(|w| SECOND_PERSON.contains(&w.as_str()));
    any(OFFER_NOUNS)
        && (polite || !addressed && (any(CONTEXT_WORDS) || own_line && words.len() <= 4))
}

fn strip_trailing(text: &str) -> Option<&str> {
    let (before, last) = last_line(text);
    if !before.trim().is_empty() && (is_rule(last) || is_afterword(last, true)) {
        return Some(before);
    }
    // "… Оформите сегодня! Надеюсь, это поможет." on one line.
    let start = last_sentence_start(text)?;
    is_afterword(&text[start..], false).then(|| &text[..start])
}

/// Where the last sentence of `text` starts, if there is more than one.
fn last_sentence_start(text: &str) -> Option<usize> {
    let mut start = None;
    let mut chars = text.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if matches!(c, '.' | '!' | '?' | '…') {
            if let Some(&(i, next)) = chars.peek() {
                if next.is_whitespace() {
                    let skipped = text[i..].len() - text[i..].trim_start().len();
                    if i + skipped < text.len() {
                        start = Some(i + skipped);
                    }
                }
            }
        }
    }
    start
}

/// Words of the assistant speaking about itself.
const ASSISTANT_WORDS: &[&str] = &[
    "я",
    "мне",
    "меня",
    "мной",
    "могу",
    "смогу",
    "помогу",
    "дайте",
    "скажите",
    "i",
    "me",
    "my",
    "let",
];

/// Words about reworking the text.
const EDIT_WORDS: &[&str] = &[
    "вариант*",
    "текст*",
    "формулировк*",
    "доработ*",
    "скорректир*",
    "корректир*",
    "отредактир*",
    "редактир*",
    "переписа*",
    "переформулир*",
    "адаптир*",
    "tweak*",
    "adjust*",
    "modif*",
    "revis*",
    "rewrit*",
    "rephras*",
    "version*",
    "draft*",
    "changes",
];

/// Words a "Надеюсь, …" closing uses about the text being useful.
const HELP_WORDS: &[&str] = &[
    "помож*",
    "помог*",
    "подойд*",
    "подход*",
    "понрав*",
    "устро*",
    "полезн*",
    "нужн*",
    "соответств*",
    "отвеча*",
    "удовлетвор*",
    "help*",
    "work*",
    "useful",
    "suit*",
    "meet*",
    "fit*",
    "like",
    "need*",
];

/// A closing line of the assistant's ("Надеюсь, это поможет!", "Если нужно, я могу сократить
/// текст.", "(148 символов)") rather than of the offer ("Если остались вопросы, звоните").
/// `own_line`: it is a paragraph of its own, not the last sentence of one.
fn is_afterword(line: &str, own_line: bool) -> bool {
    let words = words(unmark(line));
    let Some(first) = words.first().map(String::as_str) else {
        return false;
    };
    let second = words.get(1).map_or("", String::as_str);
    let any = |vocabulary: &[&str]| words.iter().any(|w| in_vocabulary(w, vocabulary));
    let count_words = ["символ*", "знак*", "character*", "длин*", "length"];
    match first {
        "надеюсь" | "hope" => any(HELP_WORDS),
        "i" if second == "hope" => any(HELP_WORDS),
        "если" | "if" | "могу" | "хотите" | "would" | "i" | "пожалуйста" | "please" => {
            any(ASSISTANT_WORDS) || any(EDIT_WORDS)
        }
        "дайте" | "feel" => true,
        "let" => second == "me",
        "не" => second == "стесняйтесь",
        "примечание" | "пояснение" | "комментарий" | "note" => {
            any(ASSISTANT_WORDS) || any(EDIT_WORDS) || any(&count_words)
        }
        // "Этот текст подчёркивает выгоду…" comments on the text; as the last sentence of a
        // paragraph it may be the offer's own ("Этот вариант вклада — самый выгодный").
        "этот" | "данный" | "такой" | "this" => {
            own_line && in_vocabulary(second, &["текст*", "text", "message*", "draft*"])
        }
        "длина" | "количество" | "число" | "character" | "characters" | "length" => {
            any(&count_words) && words.iter().any(|w| w.chars().all(|c| c.is_numeric()))
        }
        _ => {
            words.len() <= 3
                && first.chars().all(|c| c.is_numeric())
                && in_vocabulary(second, &count_words)
        }
    }
}

/// Quotes that may wrap the whole answer, opening and closing.
const QUOTES: &[(char, char)] = &[
    ('«', '»'),
    ('„', '“'),
    ('“', '”'),
    ('"', '"'),
    ('\'', '\''),
    ('‘', '’'),
];

fn strip_quotes(text: &str) -> Option<&str> {
    let first = text.chars().next()?;
    let last = text.chars().next_back()?;
    QUOTES.iter().find_map(|&(open, close)| {
        if first != open || last != close || text.len() < open.len_utf8() + close.len_utf8() + 1 {
            return None;
        }
        let inner = &text[open.len_utf8()..text.len() - close.len_utf8()];
        // «Газпромбанк» дарит кэшбэк в «Мобильном банке»: the quotes close inside, so they stay.
        let wraps_all = if open == close {
            !inner.contains(open)
        } else {
            let mut depth = 0usize;
            inner.chars().all(|c| {
                if c == open {
                    depth += 1;
                } else if c == close {
                    if depth == 0 {
                        return false;
                    }
                    depth -= 1;
                }
                true
            }) && depth == 0
        };
        wraps_all.then_some(inner)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules(max_chars: Option<u32>, banned: &[&str]) -> ChannelRules {
        ChannelRules {
            max_chars,
            banned_phrases: banned.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn review(raw: &str) -> ReviewedOffer {
        review_offer(raw, &ChannelRules::default())
    }

    const OFFER: &str =
        "Уважаемая Анна! Оформите кредитную карту «Умная» с кэшбэком до 10% — это займёт 5 минут.";

    #[test]
    fn boilerplate_around_an_offer_is_removed_and_flagged() {
        let cases: &[(&str, &str)] = &[
            ("Конечно! Вот текст сообщения:\n\n{OFFER}", "{OFFER}"),
            ("Конечно, вот вариант для клиента:\n{OFFER}", "{OFFER}"),
            ("Вот текст сообщения: {OFFER}", "{OFFER}"),
            ("Вот текст SMS-сообщения для клиента:\n\n«{OFFER}»", "{OFFER}"),
            ("Ниже представлен текст push-уведомления:\n{OFFER}", "{OFFER}"),
            ("Вот маркетинговое предложение для клиента:\n\n\"{OFFER}\"", "{OFFER}"),
            ("Конечно! Вот персонализированное маркетинговое предложение для клиента в формате SMS:\n\n«{OFFER}»\n\nНадеюсь, это поможет!", "{OFFER}"),
            ("Разумеется! Вот ваш текст:\n{OFFER}", "{OFFER}"),
            ("Вот ваш текст: {OFFER}", "{OFFER}"),
            ("Sure thing! {OFFER}", "{OFFER}"),
            ("Okay, here is the SMS: {OFFER}", "{OFFER}"),
            ("Да, конечно! Вот сообщение:\n{OFFER}", "{OFFER}"),
            ("Хорошо, вот вариант текста:\n{OFFER}", "{OFFER}"),
            ("Конечно!\n\n{OFFER}", "{OFFER}"),
            ("Конечно! {OFFER}", "{OFFER}"),
            ("Sure! Here is a personalized SMS for the client:\n\n\"{OFFER}\"\n\nI hope this helps!", "{OFFER}"),
            ("Sure, here's the marketing offer for the client:\n{OFFER}", "{OFFER}"),
            ("Certainly! Below is a short SMS text:\n\n{OFFER}", "{OFFER}"),
            ("Of course! Here's your message:\n{OFFER}", "{OFFER}"),
            ("Текст СМС: {OFFER}", "{OFFER}"),
            ("Текст сообщения для клиента:\n{OFFER}", "{OFFER}"),
            ("Маркетинговое предложение:\n{OFFER}", "{OFFER}"),
            ("Ответ:\n{OFFER}", "{OFFER}"),
            ("SMS: {OFFER}", "{OFFER}"),
            ("**SMS:** {OFFER}", "{OFFER}"),
            ("**Текст сообщения:**\n\n{OFFER}", "{OFFER}"),
            ("### Текст push-уведомления\n\n{OFFER}", "{OFFER}"),
            ("Assistant: {OFFER}", "{OFFER}"),
            ("«{OFFER}»", "{OFFER}"),
            ("\"{OFFER}\"", "{OFFER}"),
            ("„{OFFER}“", "{OFFER}"),
            ("“{OFFER}”", "{OFFER}"),
            ("```\n{OFFER}\n```", "{OFFER}"),
            ("```text\n{OFFER}\n```\n\nЕсли нужно, я могу сократить текст.", "{OFFER}"),
            ("Вот текст:\n```\n{OFFER}\n```", "{OFFER}"),
            ("---\n{OFFER}\n---", "{OFFER}"),
            ("{OFFER}\n\nНадеюсь, это поможет!", "{OFFER}"),
            ("{OFFER}\n\nНадеюсь, этот вариант вам подойдёт.", "{OFFER}"),
            ("{OFFER}\n\nЕсли нужно что-то изменить, дайте знать.", "{OFFER}"),
            ("{OFFER}\nЕсли хотите, я могу предложить другой вариант.", "{OFFER}"),
            ("{OFFER}\n\nДайте знать, если нужны правки!", "{OFFER}"),
            ("{OFFER}\n\nThis message highlights the cashback.", "{OFFER}"),
            ("{OFFER}\n\nЭтот текст подчёркивает выгоду и содержит призыв к действию.", "{OFFER}"),
            ("{OFFER}\n\n(87 символов)", "{OFFER}"),
            ("{OFFER}\n\nДлина: 87 символов", "{OFFER}"),
            ("{OFFER}\n\nLet me know if you need any changes!", "{OFFER}"),
            ("{OFFER} Надеюсь, это поможет!", "{OFFER}"),
            ("  \n{OFFER}\n\nПримечание: текст укладывается в 160 символов.\n ", "{OFFER}"),
        ];
        for (raw, expected) in cases {
            let raw = raw.replace("{OFFER}", OFFER);
            let expected = expected.replace("{OFFER}", OFFER);
            let reviewed = review(&raw);
            assert_eq!(reviewed.text, expected, "cleaning {raw:?}");
            assert_eq!(reviewed.flags, [BOILERPLATE_REMOVED], "flags of {raw:?}");
        }
    }

    #[test]
    fn offer_text_that_looks_like_boilerplate_stays() {
        let offers = [
            "Вот это предложение! Кредитная карта с лимитом до 1 000 000 ₽ и 180 днями без процентов.",
            "Вот что мы предлагаем: вклад под 18% годовых на 6 месяцев.",
            "Вот ваше персональное предложение: кредит наличными под 9,9%.",
            "Вот ваше предложение:\nкредит наличными под 9,9%.",
            "Вот для вас выгодное предложение для клиентов-пенсионеров: вклад 18%.",
            "Вот предложение, от которого невозможно отказаться: кредит под 3,9%.",
            "Специальное предложение для вас: кэшбэк 7% в супермаркетах.",
            "Персональное предложение: ипотека от 5,5% для вашей семьи.",
            "Предложение: рефинансирование под 12% без визита в офис.",
            "Конечно, вы заслуживаете лучшего: премиальная карта с консьерж-сервисом.",
            "Отлично! Теперь кредит можно оформить за 5 минут.",
            "Да, это возможно: кредит без справок о доходах!",
            "«Газпромбанк» дарит кэшбэк до 10% — оформите карту в «Мобильном банке».",
            "\"Газпромбанк\" дарит кэшбэк \"5%\" на всё",
            "Тема: Ваш новый кешбэк\n\nЗдравствуйте, Иван! Кэшбэк 10% на АЗС уже ждёт вас.",
            "Оформите вклад онлайн.\nЕсли у вас остались вопросы, звоните 8 800 100-07-01.",
            "Оформите вклад онлайн.\nЕсли хотите изменить срок, приходите в офис.",
            "Оформите вклад онлайн.\nПримечание: ставка зависит от срока вклада.",
            "Надеемся, вам понравится новая карта! Оформите её в приложении.",
            "Вклад «Надёжный» — 17% годовых.\nЭто сообщение не требует ответа.",
            "# Кредитная карта «Умная»\n\nКэшбэк до 10% на всё.",
            "Акция до 10:00 завтра: кредит под 0%!",
            "Конечно",
        ];
        for offer in offers {
            let reviewed = review(offer);
            assert_eq!(reviewed.text, offer, "{offer:?} must stay as it is");
            assert!(
                !reviewed.flags.contains(&BOILERPLATE_REMOVED.to_string()),
                "{offer:?}: {:?}",
                reviewed.flags
            );
        }
    }

    #[test]
    fn whitespace_at_the_ends_is_not_boilerplate() {
        let reviewed = review(&format!("\n\n  {OFFER} \r\n"));
        assert_eq!(reviewed.text, OFFER);
        assert!(reviewed.flags.is_empty(), "{:?}", reviewed.flags);
        let inner = "Кэшбэк 10%\n\nна всё   до конца года";
        assert_eq!(
            review(inner).text,
            inner,
            "inside, whitespace is the model's"
        );
    }

    #[test]
    fn nothing_left_is_empty() {
        assert_eq!(review("").flags, [EMPTY]);
        assert_eq!(review(" \n\t ").flags, [EMPTY]);
        let reviewed = review("Конечно! Вот текст сообщения:");
        assert_eq!(reviewed.text, "");
        assert_eq!(reviewed.flags, [BOILERPLATE_REMOVED, EMPTY]);
        assert_eq!(
            review("«»").flags,
            ["not_russian"],
            "no letters: not an offer in Russian"
        );
    }

    #[test]
    fn length_is_counted_in_characters_after_cleaning() {
        let exactly = "я".repeat(160);
        assert!(review_offer(&exactly, &rules(Some(160), &[]))
            .flags
            .is_empty());
        let over = "я".repeat(161);
        assert_eq!(
            review_offer(&over, &rules(Some(160), &[])).flags,
            ["too_long:161/160"]
        );
        assert!(review_offer(&over, &rules(None, &[])).flags.is_empty());
        // The preamble does not count towards the limit, and the text is never cut.
        let wrapped = format!("Конечно! Вот текст сообщения:\n\n«{exactly}»");
        let reviewed = review_offer(&wrapped, &rules(Some(160), &[]));
        assert_eq!(reviewed.text, exactly);
        assert_eq!(reviewed.flags, [BOILERPLATE_REMOVED]);
        let reviewed = review_offer(&over, &rules(Some(100), &[]));
        assert_eq!(reviewed.text, over);
        assert_eq!(reviewed.flags, ["too_long:161/100"]);
    }

    #[test]
    fn banned_phrases_match_whole_case_and_yo_insensitively() {
        let text =
            "Гарантированное   одобрение! Кредит без справок — ещё 100% выгоды, гарантия банка.";
        let cases: &[(&str, bool)] = &[
            ("гарантированное одобрение", true),
            ("ГАРАНТИРОВАННОЕ ОДОБРЕНИЕ", true),
            ("без справок", true),
            ("еще", true),
            ("ЕЩЁ 100%", true),
            ("100%", true),
            ("00%", false),
            ("гарант", false),
            ("справок —", true),
            ("гарантия банка", true),
            ("кредит без", true),
            ("без", true),
            ("бе", false),
            ("выгода", false),
            ("  ", false),
        ];
        for (phrase, expected) in cases {
            let flags = review_offer(text, &rules(None, &[phrase])).flags;
            assert_eq!(
                flags.contains(&format!("banned_phrase:{phrase}")),
                *expected,
                "{phrase:?} in {text:?}: {flags:?}"
            );
        }
        let flags = review_offer(
            text,
            &rules(None, &["гарантия банка", "без справок", "вклад"]),
        )
        .flags;
        assert_eq!(
            flags,
            ["banned_phrase:гарантия банка", "banned_phrase:без справок"],
            "in the project's order, only those found"
        );
        // A phrase inside removed boilerplate is not in the offer.
        let flags = review_offer(
            "Вот текст сообщения для клиента:\nКэшбэк 10% на всё.",
            &rules(None, &["текст сообщения"]),
        )
        .flags;
        assert_eq!(flags, [BOILERPLATE_REMOVED]);
    }

    #[test]
    fn an_offer_not_in_russian_is_flagged() {
        let cases: &[(&str, bool)] = &[
            (OFFER, false),
            ("Dear customer, get a credit card with 5% cashback today!", true),
            ("Dear customer, Газпромбанк offers a credit card with cashback on every purchase!", true),
            ("Оформите карту Mastercard Gold в приложении: https://www.gazprombank.ru/personal/cards/debit/smart-card/?utm_source=sms промокод AUTUMN", false),
            ("Пишите на offers@gazprombank.ru — ответим за час", false),
            ("8-800-100-07-01", true),
        ];
        for (text, flagged) in cases {
            let flags = review(text).flags;
            assert_eq!(
                flags.contains(&NOT_RUSSIAN.to_string()),
                *flagged,
                "{text:?}: {flags:?}"
            );
        }
    }

    #[test]
    fn flags_come_in_a_stable_order() {
        let raw = "Sure! Here is the SMS:\n\n\"Guaranteed approval for everyone, apply now!\"";
        let reviewed = review_offer(raw, &rules(Some(20), &["guaranteed approval"]));
        assert_eq!(
            reviewed.text,
            "Guaranteed approval for everyone, apply now!"
        );
        assert_eq!(
            reviewed.flags,
            [
                "boilerplate_removed",
                "too_long:44/20",
                "banned_phrase:guaranteed approval",
                "not_russian"
            ]
        );
    }

    #[test]
    fn the_seeded_channels_have_defaults() {
        assert_eq!(default_max_chars("SMS"), Some(160));
        assert_eq!(default_max_chars("PUSH"), Some(120));
        assert_eq!(default_max_chars("push"), Some(120));
        assert_eq!(default_max_chars("MOB_BANNER"), Some(90));
        assert_eq!(default_max_chars("OFFICE_BANNER"), Some(250));
        assert_eq!(default_max_chars("MOBILE_CHAT"), Some(500));
        for key in ["EMAIL", "TMO", "KND", "FAX", ""] {
            assert_eq!(default_max_chars(key), None, "{key}");
        }
    }

    #[test]
    fn phrase_keys_ignore_case_yo_and_spacing() {
        assert_eq!(phrase_key("  Ещё   Кредит "), phrase_key("еще кредит"));
        assert_ne!(phrase_key("кредит-онлайн"), phrase_key("кредит онлайн"));
    }

    proptest! {
        #[test]
        fn the_offer_is_always_a_piece_of_the_answer(raw in "(Конечно! |Вот текст:\n|«|\"|```\n|Sure! Here is the SMS: |\\*\\*SMS:\\*\\* )*[а-яА-ЯёЁa-z0-9 ,.!?:«»\"\n-]{0,80}(»|\"|\n```|\n\nНадеюсь, это поможет!)*") {
            let reviewed = review(&raw);
            prop_assert!(raw.contains(&reviewed.text), "{:?} from {:?}", reviewed.text, raw);
            prop_assert_eq!(
                reviewed.flags.contains(&BOILERPLATE_REMOVED.to_string()),
                reviewed.text != raw.trim()
            );
            prop_assert_eq!(reviewed.text.is_empty(), reviewed.flags.contains(&EMPTY.to_string()));
        }

        #[test]
        fn any_text_is_reviewed_without_panicking(raw in any::<String>(), phrase in any::<String>(), max in proptest::option::of(1u32..300)) {
            let reviewed = review_offer(&raw, &ChannelRules { max_chars: max, banned_phrases: vec![phrase] });
            prop_assert!(raw.contains(&reviewed.text));
        }
    }
}
