-- The thread of each client request: what was sent to the model (`user`) and the model's
-- offers (`system`), as the old API named them, with ratings and generation figures.
CREATE TABLE client_request_messages (
    id                uuid        PRIMARY KEY,
    request_id        uuid        NOT NULL,
    generation_id     uuid        NOT NULL,
    parent_id         uuid,
    message_type      text        NOT NULL CHECK (message_type IN ('user', 'system')),
    text              text        NOT NULL,
    rating            text        NOT NULL DEFAULT 'undefined',
    rating_comment    text,
    flags             jsonb       NOT NULL DEFAULT '[]',
    model             text,
    prompt_version    integer,
    prompt_tokens     integer,
    completion_tokens integer,
    duration_ms       bigint,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX client_request_messages_thread ON client_request_messages (request_id, created_at, id);

-- Why the newest generation failed for good, shown next to the `error` status.
ALTER TABLE client_requests ADD COLUMN status_reason text;
