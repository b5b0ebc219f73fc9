-- The generation queue. A job is written by a trigger in the same transaction as its
-- `GenerationRequested` event, so no request is ever recorded without its job, and the job
-- ends in the same transaction as the event that ends the generation (`MessageGenerated`, or
-- a permanent `GenerationFailed`). Workers claim jobs with FOR UPDATE SKIP LOCKED under a
-- lease; a reaper returns the jobs of workers that stopped renewing theirs.
CREATE TABLE generation_jobs (
    generation_id uuid        PRIMARY KEY,
    request_id    uuid        NOT NULL,
    project_id    uuid        NOT NULL,
    channel_id    uuid        NOT NULL,
    -- Where the `GenerationRequested` event is (the request's stream), and the HTTP request it
    -- came from, for the worker's events' causation and correlation.
    requested_sequence bigint NOT NULL,
    correlation_id text,
    -- `queued` → `running` (leased) → `done` (an offer) or `dead` (failed for good);
    -- `running` goes back to `queued` after a retryable failure or an expired lease.
    state         text        NOT NULL DEFAULT 'queued'
                              CHECK (state IN ('queued', 'running', 'done', 'dead')),
    attempts      integer     NOT NULL DEFAULT 0,
    run_after     timestamptz NOT NULL DEFAULT now(),
    leased_by     text,
    lease_until   timestamptz,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX generation_jobs_ready ON generation_jobs (run_after, created_at) WHERE state = 'queued';
CREATE INDEX generation_jobs_leases ON generation_jobs (lease_until) WHERE state = 'running';
CREATE INDEX generation_jobs_channel ON generation_jobs (project_id, channel_id, state);
CREATE INDEX generation_jobs_dead ON generation_jobs (updated_at) WHERE state = 'dead';

CREATE FUNCTION generation_jobs_follow_log() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    body    jsonb := NEW.payload -> NEW.event_type;
    created jsonb;
BEGIN
    IF NEW.event_type = 'GenerationRequested' THEN
        SELECT payload -> 'ClientRequestCreated' INTO created
          FROM events
         WHERE aggregate_type = NEW.aggregate_type AND aggregate_id = NEW.aggregate_id
           AND event_type = 'ClientRequestCreated'
         ORDER BY sequence LIMIT 1;
        IF created IS NULL THEN
            RAISE EXCEPTION 'generation requested for client request % that was never created', NEW.aggregate_id;
        END IF;
        INSERT INTO generation_jobs (generation_id, request_id, project_id, channel_id, requested_sequence,
                                     correlation_id, created_at, updated_at)
        VALUES ((body ->> 'generation_id')::uuid, NEW.aggregate_id::uuid,
                (created ->> 'project_id')::uuid, (created ->> 'channel_id')::uuid, NEW.sequence,
                NEW.metadata ->> 'correlation_id', NEW.recorded_at, NEW.recorded_at)
        ON CONFLICT (generation_id) DO NOTHING;
    ELSIF NEW.event_type = 'MessageGenerated' THEN
        UPDATE generation_jobs
           SET state = 'done', leased_by = NULL, lease_until = NULL, updated_at = now()
         WHERE generation_id = (body ->> 'generation_id')::uuid;
    ELSIF NEW.event_type = 'GenerationFailed' THEN
        IF (body ->> 'permanent')::boolean THEN
            UPDATE generation_jobs
               SET state = 'dead', leased_by = NULL, lease_until = NULL,
                   last_error = body ->> 'error', updated_at = now()
             WHERE generation_id = (body ->> 'generation_id')::uuid;
        END IF;
    ELSIF NEW.event_type = 'GenerationRequeued' THEN
        UPDATE generation_jobs
           SET state = 'queued', attempts = 0, run_after = now(), leased_by = NULL,
               lease_until = NULL, updated_at = now()
         WHERE generation_id = (body ->> 'generation_id')::uuid;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER generation_jobs_follow_log
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'ClientRequest'
          AND NEW.event_type IN ('GenerationRequested', 'MessageGenerated', 'GenerationFailed', 'GenerationRequeued'))
    EXECUTE FUNCTION generation_jobs_follow_log();
