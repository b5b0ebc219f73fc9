-- Reviews from Argilla (MessageReviewed) in the statistics: each offer's newest review counted
-- once, on the day and month its offer was generated, per channel and prompt version, like
-- `statistics_ratings`.

-- Where an offer's newest review is counted, so a later review moves it.
CREATE TABLE statistics_review_state (
    message_id uuid     PRIMARY KEY,
    quality    text     NOT NULL,
    corrected  boolean  NOT NULL,
    rating     smallint
);

-- Reviewed offers by quality, those with a corrected text, and their 1–5 ratings as a sum and
-- a count, so the mean stays incremental.
CREATE TABLE statistics_reviews (
    project_id     uuid    NOT NULL,
    period         text    NOT NULL CHECK (period IN ('day', 'month')),
    day            date    NOT NULL,
    channel_id     uuid    NOT NULL,
    prompt_version integer NOT NULL,
    reviewed       bigint  NOT NULL,
    ok             bigint  NOT NULL,
    error          bigint  NOT NULL,
    revision       bigint  NOT NULL,
    corrected      bigint  NOT NULL,
    rating_sum     bigint  NOT NULL,
    rating_count   bigint  NOT NULL,
    PRIMARY KEY (project_id, period, day, channel_id, prompt_version)
);
