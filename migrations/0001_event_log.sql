-- The event log. postgres-es writes the first seven columns and names them in every statement,
-- so the extra ones (global order, writing transaction, time) are filled by defaults.
CREATE TABLE events (
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL CHECK (sequence >= 0),
    event_type      text        NOT NULL,
    event_version   text        NOT NULL,
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    global_position bigint      GENERATED ALWAYS AS IDENTITY,
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE UNIQUE INDEX events_global_position ON events (global_position);
-- Subscribers read in (transaction_id, global_position) order below the oldest running
-- transaction, which never skips an event that commits late.
CREATE INDEX events_transaction_order ON events (transaction_id, global_position);

-- The log is append-only: history is never rewritten.
CREATE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_immutable();

-- Where each named subscriber has got to; written in the same transaction as its read models.
CREATE TABLE subscriber_checkpoints (
    subscriber       text        PRIMARY KEY,
    last_tx          xid8        NOT NULL DEFAULT '0',
    last_pos         bigint      NOT NULL DEFAULT 0,
    events_processed bigint      NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
