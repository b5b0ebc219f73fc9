-- Client imports. The log records each import that committed (`ClientsImported`, with its
-- `ClientRequestCreated` events in the same transaction). This table is the operational status
-- a caller polls, including imports still running and those that failed (and so recorded
-- nothing): like `generation_jobs` it is state, not a read model, and is never rebuilt.
CREATE TABLE client_imports (
    id                 uuid        PRIMARY KEY,
    project_id         uuid        NOT NULL,
    channel_id         uuid        NOT NULL,
    source             text        NOT NULL,
    created_by         text        NOT NULL,
    status             text        NOT NULL DEFAULT 'running'
                                   CHECK (status IN ('running', 'done', 'failed')),
    rows               bigint      NOT NULL DEFAULT 0,
    created            bigint      NOT NULL DEFAULT 0,
    duplicates         bigint      NOT NULL DEFAULT 0,
    rejected           jsonb       NOT NULL DEFAULT '[]',
    error              text,
    generate           boolean     NOT NULL DEFAULT false,
    generations_queued bigint,
    consistency_token  text,
    started_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz
);
CREATE INDEX client_imports_project ON client_imports (project_id, started_at);

-- Named client databases an admin registers, read by performers by name. The DSN holds
-- credentials, so it lives here and never in an event or an answer of the API.
CREATE TABLE client_sources (
    name                 text        PRIMARY KEY,
    description          text        NOT NULL DEFAULT '',
    dsn                  text        NOT NULL,
    query                text        NOT NULL,
    max_rows             integer     NOT NULL,
    statement_timeout_ms integer     NOT NULL,
    created_by           text        NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now()
);
