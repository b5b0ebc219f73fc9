use thiserror::Error;

/// How the outside world should read a rejection (the HTTP layer maps it to a status code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input itself is wrong (422).
    Invalid,
    /// The thing does not exist, or the caller may not know that it does (404).
    NotFound,
    /// The caller is known to the thing but lacks the right (403).
    Forbidden,
    /// The input is fine but the current state forbids it (409).
    Conflict,
}

/// Every reason the domain can refuse a command.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("client_data_decoding: no description for column(s) {}", columns.join(", "))]
    MissingDescriptions { columns: Vec<String> },
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("{what} already exists")]
    AlreadyExists { what: &'static str },
    #[error("{what} is archived")]
    Archived { what: &'static str },
    #[error("only a manager of this project may do that")]
    ManagerRequired,
    #[error("only an admin may do that")]
    AdminRequired,
    #[error("a project must keep at least one manager")]
    LastManager,
    #[error("user is already a member of this project with role {role}")]
    AlreadyMember { role: String },
    #[error("user is not a member of this project")]
    NotAMember,
    #[error("sales channel is not attached to this project")]
    ChannelNotAttached,
    #[error("user is deactivated")]
    UserDeactivated,
    #[error("{0}")]
    Rejected(String),
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        DomainError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            DomainError::Invalid { .. } | DomainError::MissingDescriptions { .. } => {
                ErrorKind::Invalid
            }
            DomainError::NotFound { .. } | DomainError::NotAMember => ErrorKind::NotFound,
            DomainError::ManagerRequired | DomainError::AdminRequired => ErrorKind::Forbidden,
            DomainError::AlreadyExists { .. }
            | DomainError::Archived { .. }
            | DomainError::LastManager
            | DomainError::AlreadyMember { .. }
            | DomainError::ChannelNotAttached
            | DomainError::UserDeactivated
            | DomainError::Rejected(_) => ErrorKind::Conflict,
        }
    }

    /// Stable machine-readable code for API clients.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::Invalid { .. } => "invalid",
            DomainError::MissingDescriptions { .. } => "missing_descriptions",
            DomainError::NotFound { .. } => "not_found",
            DomainError::AlreadyExists { .. } => "already_exists",
            DomainError::Archived { .. } => "archived",
            DomainError::ManagerRequired => "manager_required",
            DomainError::AdminRequired => "admin_required",
            DomainError::LastManager => "last_manager",
            DomainError::AlreadyMember { .. } => "already_member",
            DomainError::NotAMember => "not_a_member",
            DomainError::ChannelNotAttached => "channel_not_attached",
            DomainError::UserDeactivated => "user_deactivated",
            DomainError::Rejected(_) => "rejected",
        }
    }

    /// The input fields the rejection is about, for forms that highlight them.
    pub fn fields(&self) -> Vec<String> {
        match self {
            DomainError::Invalid { field, .. } => vec![field.clone()],
            DomainError::MissingDescriptions { columns } => columns
                .iter()
                .map(|c| format!("client_data_decoding.{c}"))
                .collect(),
            _ => Vec::new(),
        }
    }
}
