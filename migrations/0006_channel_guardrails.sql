-- Channel guardrails: each project channel's length limit and each project's banned phrases.
-- Rows projected before these existed come from events without them, which mean no limit and
-- no phrases, so no rebuild is needed.
ALTER TABLE project_channels ADD COLUMN max_chars integer;
ALTER TABLE projects ADD COLUMN banned_phrases jsonb NOT NULL DEFAULT '[]';
