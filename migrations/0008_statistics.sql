-- Statistics for managers: pre-aggregated rows kept by the `statistics` subscriber, so that a
-- statistics query sums a few thousand rows instead of grouping every client request. Every
-- figure keeps the day it happened on, so a date range filters the aggregates directly.

-- What the subscriber must remember to move a count when something changes.
CREATE TABLE statistics_projects (
    project_id uuid PRIMARY KEY,
    product_id uuid NOT NULL
);

CREATE TABLE statistics_project_members (
    project_id uuid NOT NULL,
    user_id    uuid NOT NULL,
    PRIMARY KEY (project_id, user_id)
);

CREATE TABLE statistics_project_channels (
    project_id uuid NOT NULL,
    channel_id uuid NOT NULL,
    PRIMARY KEY (project_id, channel_id)
);

-- One row per client request: where its single count in `statistics_requests_daily` sits.
-- `prompt_version` 0: no text was asked for yet; `cluster` '': the client has no `super_clust`.
CREATE TABLE statistics_request_state (
    request_id     uuid    PRIMARY KEY,
    project_id     uuid    NOT NULL,
    channel_id     uuid    NOT NULL,
    cluster        text    NOT NULL,
    day            date    NOT NULL,
    outcome        text    NOT NULL,
    prompt_version integer NOT NULL
);

-- Generations: their prompt version and channel, for the offers they produce.
CREATE TABLE statistics_generation_state (
    generation_id  uuid    PRIMARY KEY,
    project_id     uuid    NOT NULL,
    channel_id     uuid    NOT NULL,
    prompt_version integer NOT NULL
);

-- Offers: where their rating is counted, so a changed rating moves.
CREATE TABLE statistics_message_state (
    message_id     uuid    PRIMARY KEY,
    project_id     uuid    NOT NULL,
    channel_id     uuid    NOT NULL,
    prompt_version integer NOT NULL,
    day            date    NOT NULL,
    rating         text    NOT NULL
);

-- Requests by the day (`period` 'day') and the month ('month', `day` its first day) they were
-- created, per channel, cluster and prompt version of their newest text, with one column per
-- current outcome. Month rows let a long date range sum a few rows per month instead of one per
-- day: a query takes the whole months of its range from month rows and the rest from day rows.
CREATE TABLE statistics_requests (
    project_id        uuid    NOT NULL,
    period            text    NOT NULL CHECK (period IN ('day', 'month')),
    day               date    NOT NULL,
    channel_id        uuid    NOT NULL,
    cluster           text    NOT NULL,
    prompt_version    integer NOT NULL,
    requests          bigint  NOT NULL,
    sold              bigint  NOT NULL,
    interest          bigint  NOT NULL,
    negative_reaction bigint  NOT NULL,
    positive_reaction bigint  NOT NULL,
    reflection        bigint  NOT NULL,
    undefined         bigint  NOT NULL,
    PRIMARY KEY (project_id, period, day, channel_id, cluster, prompt_version)
);

-- The same summed over every project of a product: what a question about all projects (an
-- admin's default) reads, a few rows per product instead of per project.
CREATE TABLE statistics_requests_by_product (LIKE statistics_requests INCLUDING ALL);
ALTER TABLE statistics_requests_by_product RENAME COLUMN project_id TO product_id;

-- Offers by the day and month they were generated, per channel and prompt version, with one
-- column per current rating.
CREATE TABLE statistics_ratings (
    project_id     uuid    NOT NULL,
    period         text    NOT NULL CHECK (period IN ('day', 'month')),
    day            date    NOT NULL,
    channel_id     uuid    NOT NULL,
    prompt_version integer NOT NULL,
    ok             bigint  NOT NULL,
    error          bigint  NOT NULL,
    revision       bigint  NOT NULL,
    undefined      bigint  NOT NULL,
    PRIMARY KEY (project_id, period, day, channel_id, prompt_version)
);

-- Generation work per project and day: texts, failed attempts, tokens and time. Rows of the
-- nil project sum every project, for questions about all of them.
CREATE TABLE statistics_generation_daily (
    project_id         uuid   NOT NULL,
    day                date   NOT NULL,
    generated          bigint NOT NULL DEFAULT 0,
    failures           bigint NOT NULL DEFAULT 0,
    permanent_failures bigint NOT NULL DEFAULT 0,
    completion_tokens  bigint NOT NULL DEFAULT 0,
    duration_ms        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, day)
);

-- Generation latency per project (and the nil project: all of them) and day as a histogram with
-- buckets 5% wide (bucket b holds durations in [1.05^(b-1), 1.05^b) ms; bucket 0 holds 0 ms), so
-- a median or p95 over any set of projects is read from the counts to within 2.5%, and kept by
-- increments.
CREATE TABLE statistics_latency_daily (
    project_id uuid    NOT NULL,
    day        date    NOT NULL,
    bucket     integer NOT NULL,
    messages   bigint  NOT NULL,
    PRIMARY KEY (project_id, day, bucket)
);
