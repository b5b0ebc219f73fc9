// Russian by default; English on request. Keys are short English phrases; a missing key shows
// the key itself, so a forgotten translation is visible but never breaks a page.
const ru = {
  'Sign in': 'Вход', 'Email': 'Эл. почта', 'Password': 'Пароль', 'Sign out': 'Выйти',
  'Projects': 'Проекты', 'Catalog': 'Каталог', 'Statistics': 'Статистика', 'Administration': 'Администрирование',
  'Account': 'Профиль', 'Change password': 'Сменить пароль', 'Current password': 'Текущий пароль',
  'New password': 'Новый пароль', 'Password changed': 'Пароль изменён', 'Search': 'Поиск',
  'Product': 'Продукт', 'All products': 'Все продукты', 'New project': 'Новый проект', 'Name': 'Название',
  'Description (Markdown)': 'Описание (Markdown)', 'Create': 'Создать', 'Save': 'Сохранить', 'Cancel': 'Отмена',
  'Edit': 'Изменить', 'Archive': 'В архив', 'Archived': 'В архиве', 'Show archived': 'Показать архивные',
  'Channels': 'Каналы', 'Members': 'Участники', 'Requests': 'Заявки', 'Role': 'Роль', 'manager': 'менеджер',
  'performer': 'исполнитель', 'Add member': 'Добавить участника', 'Add': 'Добавить', 'Remove': 'Удалить',
  'Attach channels': 'Подключить каналы', 'Attach': 'Подключить', 'Prompt': 'Промпт', 'version': 'версия',
  'Earlier versions': 'Прежние версии', 'Edit prompt': 'Изменить промпт', 'Open': 'Открыть',
  'Client': 'Клиент', 'Age': 'Возраст', 'Gender': 'Пол', 'Cluster': 'Кластер', 'Source': 'Источник',
  'Status': 'Статус', 'Latest offer': 'Последнее предложение', 'Rating': 'Оценка', 'Outcome': 'Результат',
  'Filters': 'Фильтры', 'Any': 'Любой', 'Sort': 'Сортировка', 'Newest first': 'Сначала новые', 'Oldest first': 'Сначала старые',
  'Previous': 'Назад', 'Next': 'Вперёд', 'of': 'из', 'Rows per page': 'Строк на странице', 'selected': 'выбрано',
  'Generate for selected': 'Сгенерировать для выбранных', 'Generate all not generated': 'Сгенерировать для всех без предложения',
  'Import clients': 'Импорт клиентов', 'Drop a CSV or XLSX file here or choose one': 'Перетащите сюда файл CSV или XLSX или выберите его',
  'Choose file': 'Выбрать файл', 'Preview': 'Предпросмотр', 'Columns with descriptions': 'Колонки с описанием',
  'Columns without descriptions': 'Колонки без описания', 'Start import': 'Начать импорт', 'Generate after import': 'Сгенерировать после импорта',
  'Import report': 'Отчёт об импорте', 'rows': 'строк', 'created': 'создано', 'duplicates': 'дубликатов', 'rejected': 'отклонено',
  'Row': 'Строка', 'Reason': 'Причина', 'Export CSV': 'Экспорт CSV', 'Export PNG': 'Экспорт PNG', 'Export XLSX': 'Экспорт XLSX',
  'Generation progress': 'Ход генерации', 'queued': 'в очереди', 'running': 'идёт', 'done': 'готово', 'failed': 'ошибки',
  'Not available in this build': 'Недоступно в этой сборке', 'Loading…': 'Загрузка…', 'Nothing here yet': 'Пока пусто',
  'Features': 'Признаки клиента', 'Conversation': 'Переписка', 'Rate': 'Оценить', 'Comment': 'Комментарий',
  'Follow-up instruction': 'Уточнение для модели', 'Send': 'Отправить', 'Regenerate': 'Сгенерировать заново',
  'History': 'История', 'State at this moment': 'Состояние на этот момент', 'Back to now': 'К текущему состоянию',
  'Saved': 'Сохранено', 'Queued': 'Поставлено в очередь', 'Users': 'Пользователи', 'API tokens': 'API-токены',
  'Dead jobs': 'Упавшие задания', 'Exporter': 'Экспорт в Argilla', 'Requeue': 'Перезапустить', 'Attempts': 'Попытки',
  'Last error': 'Последняя ошибка', 'Died at': 'Упало', 'New user': 'Новый пользователь', 'Administrator': 'Администратор',
  'Active': 'Активен', 'Deactivate': 'Отключить', 'Activate': 'Включить', 'New token': 'Новый токен',
  'Copy it now: it is shown only once': 'Скопируйте сейчас: он показан один раз', 'Revoke': 'Отозвать', 'Created': 'Создан',
  'Products': 'Продукты', 'Link': 'Ссылка', 'Key': 'Ключ', 'Description': 'Описание', 'Language': 'Язык',
  'From': 'С', 'To': 'По', 'Apply': 'Применить', 'All projects': 'Все проекты', 'Conversion': 'Конверсия',
  'Channel': 'Канал', 'Prompt version': 'Версия промпта', 'Sold': 'Продано', 'Interest': 'Интерес', 'Negative': 'Отказ',
  'Sold rate': 'Доля продаж', '95% interval': 'Интервал 95%', 'Requests by outcome': 'Заявки по результату',
  'Requests by channel': 'Заявки по каналам', 'Requests by product': 'Заявки по продуктам', 'Sales by product': 'Продажи по продуктам',
  'Ratings': 'Оценки', 'Generation': 'Генерация', 'Dashboard': 'Дашборд', 'Totals': 'Итого',
  'sold': 'продано', 'reflection': 'раздумье', 'interest': 'интерес', 'negative_reaction': 'негатив',
  'positive_reaction': 'позитив', 'undefined': 'не указано', 'initial': 'новая', 'in_progress': 'генерируется', 'ok': 'готово',
  'error': 'ошибка', 'revision': 'доработка', 'Good': 'Хорошо', 'Bad': 'Плохо', 'Needs work': 'Доработать',
  'Too long for the channel': 'Длиннее, чем допускает канал', 'Banned phrase': 'Запрещённая фраза', 'Cut at the token limit': 'Обрезано по лимиту токенов',
  'Boilerplate removed': 'Убраны служебные фразы', 'prompt': 'промпт', 'offer': 'предложение', 'instruction': 'уточнение',
  'You do not have the right to do this': 'У вас нет прав на это действие', 'Signed in as': 'Вы вошли как',
  'Wrong email or password': 'Неверная почта или пароль', 'Open project': 'Открыть проект', 'Generation queued': 'Генерация поставлена в очередь',
  'Generate': 'Сгенерировать', 'Select row': 'Выбрать строку', 'Select all on page': 'Выбрать все на странице',
  'No offer yet': 'Предложения пока нет', 'Event': 'Событие', 'Actor': 'Кто', 'When': 'Когда', 'Max length': 'Макс. длина',
  'Clients': 'Клиенты', 'Export': 'Экспорт', 'Import is running': 'Импорт идёт', 'Import failed': 'Импорт не удался',
  'Dead letters': 'Необработанные записи', 'Members can only be managed by managers': 'Участниками управляют только менеджеры',
  'Back': 'Назад', 'Page': 'Страница', 'Skip to content': 'К содержимому', 'total': 'всего', 'members': 'участников',
  'channels': 'каналов', 'requests': 'заявок', 'Success rate by channel': 'Доля успеха по каналам',
  'The file is read on the server': 'Файл будет разобран на сервере', 'Expires': 'Истекает', 'Position': 'Должность',
  'Subdivision': 'Подразделение', 'Delete': 'Удалить', 'Average duration, ms': 'Средняя длительность, мс',
  'Offers generated': 'Сгенерировано текстов', 'Failed for good': 'Не удалось сгенерировать',
  'Median generation time, ms': 'Медиана генерации, мс', 'Offers generated per day': 'Тексты по дням',
  'the import refuses a file with undescribed columns': 'импорт не примет файл с колонками без описания',
  'Client added': 'Клиент добавлен', 'Offer requested': 'Запрошен текст', 'Offer written': 'Текст написан',
  'Generation failed': 'Генерация не удалась', 'Generation requeued': 'Генерация перезапущена', 'Offer rated': 'Текст оценён',
  'Outcome recorded': 'Записан результат', 'Reviewed in Argilla': 'Проверен в Argilla',
  'You': 'Это вы', 'Check the field': 'Проверьте поле', 'Copy': 'Копировать', 'Copied': 'Скопировано', 'Full name': 'Имя', 'Collapse': 'Свернуть', 'Show texts': 'Показать тексты', 'Behind the log': 'Отстаёт от журнала', 's': 'с',
  'Caught up with the log': 'Журнал выгружен полностью', 'Workspace': 'Рабочая область', 'Datasets': 'Наборы данных',
  'Events exported': 'Обработано событий', 'Updated': 'Обновлено',
  'The export to Argilla is off in this server (OFFERFLOW_ARGILLA_URL)': 'Выгрузка в Argilla в этом сервере выключена (OFFERFLOW_ARGILLA_URL)', 'Edit product': 'Изменить продукт', 'Edit channel': 'Изменить канал', 'Welcome': 'Добро пожаловать',
};

let lang = localStorage.getItem('offerflow.lang') || 'ru';

export function t(key) {
  return lang === 'ru' ? (ru[key] ?? key) : key;
}

// A number with its noun in the right form: Russian has three (1 заявка, 2 заявки, 5 заявок).
const forms = {
  channels: { ru: ['канал', 'канала', 'каналов'], en: ['channel', 'channels'] },
  members: { ru: ['участник', 'участника', 'участников'], en: ['member', 'members'] },
  requests: { ru: ['заявка', 'заявки', 'заявок'], en: ['request', 'requests'] },
  rows: { ru: ['строка', 'строки', 'строк'], en: ['row', 'rows'] },
  texts: { ru: ['текст', 'текста', 'текстов'], en: ['text', 'texts'] },
};

export function count(n, noun) {
  const f = forms[noun];
  if (!f) return `${n} ${t(noun)}`;
  if (lang !== 'ru') return `${n} ${f.en[n === 1 ? 0 : 1]}`;
  const tens = Math.abs(n) % 100;
  const ones = tens % 10;
  const form = tens >= 11 && tens <= 14 ? 2 : ones === 1 ? 0 : ones >= 2 && ones <= 4 ? 1 : 2;
  return `${n} ${f.ru[form]}`;
}

// How a rating reads: `ok` is also a request status ("готово"), so ratings have words of their own.
export function ratingName(status) {
  return t({ ok: 'Good', revision: 'Needs work', error: 'Bad' }[status] || status);
}

export function getLang() { return lang; }

export function setLang(l) {
  lang = l === 'en' ? 'en' : 'ru';
  localStorage.setItem('offerflow.lang', lang);
  document.documentElement.lang = lang;
}

document.documentElement.lang = lang;
