-- Messages Argilla refused for good (a 4xx other than 429): the exporter moved on past them.
-- An admin fixes the cause in Argilla and requeues them (requeued_at); the exporter sends
-- them again and removes the row once Argilla accepts the record.
CREATE TABLE argilla_dead_letters (
    message_id      uuid        PRIMARY KEY,
    request_id      uuid        NOT NULL,
    project_id      uuid        NOT NULL,
    dataset         text        NOT NULL,
    status_code     integer     NOT NULL,
    error           text        NOT NULL,
    attempts        integer     NOT NULL DEFAULT 1,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    requeued_at     timestamptz
);
CREATE INDEX argilla_dead_letters_requeued ON argilla_dead_letters (requeued_at)
    WHERE requeued_at IS NOT NULL;

-- The newest review of an offer from Argilla (MessageReviewed), shown in the thread.
ALTER TABLE client_request_messages
    ADD COLUMN review_quality        text,
    ADD COLUMN review_corrected_text text,
    ADD COLUMN review_rating         smallint,
    ADD COLUMN reviewed_by           text,
    ADD COLUMN reviewed_at           timestamptz;
