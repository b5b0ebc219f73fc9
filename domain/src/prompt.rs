//! The per-channel prompt a project channel starts with, built from the project (the reason
//! for the offer), the product and the channel, as the original system did, but with the
//! parts separated instead of glued together.

pub fn initial_channel_prompt(
    project_description: &str,
    product_description: &str,
    channel_description: &str,
) -> String {
    let project_description = project_description.trim();
    let mut prompt = String::new();
    if project_description.is_empty() {
        prompt.push_str(
            "При формировании маркетингового предложения необходимо учитывать следующую информацию о продукте, канале продажи и клиенте.",
        );
    } else {
        prompt.push_str(
            "При формировании маркетингового предложения необходимо учитывать информацию о поводе продажи, банковском продукте, канале продажи и клиенте.",
        );
        prompt.push_str("\n\nХарактеристики повода продажи: ");
        prompt.push_str(project_description);
    }
    prompt.push_str("\n\nХарактеристики банковского продукта: ");
    prompt.push_str(product_description.trim());
    prompt.push_str("\n\nХарактеристика канала продажи: ");
    prompt.push_str(channel_description.trim());
    prompt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_names_every_part_with_separators() {
        let p = initial_channel_prompt("Осенняя акция", "Кредитная карта", "Коротко");
        assert!(p.contains("Характеристики повода продажи: Осенняя акция\n"));
        assert!(p.contains("Характеристики банковского продукта: Кредитная карта\n"));
        assert!(p.ends_with("Характеристика канала продажи: Коротко"));
    }

    #[test]
    fn prompt_without_project_description_omits_the_reason() {
        let p = initial_channel_prompt("  ", "Депозит", "SMS");
        assert!(!p.contains("повода продажи:"));
        assert!(p.contains("Депозит"));
    }
}
