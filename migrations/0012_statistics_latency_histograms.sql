-- Generation latency as one histogram per project and day instead of one row per bucket: a
-- statistics query over months reads a row a day and finds each day's median and p95 itself,
-- where summing and ranking tens of thousands of bucket rows in SQL took most of its time.
-- `messages[b]` counts the offers in bucket b (see 0008: buckets 5% wide); the array only spans
-- the buckets seen that day (its lower bound need not be 1), holes are NULL.
CREATE TABLE statistics_latency (
    project_id uuid   NOT NULL,
    day        date   NOT NULL,
    messages   int8[] NOT NULL,
    PRIMARY KEY (project_id, day)
);

INSERT INTO statistics_latency (project_id, day, messages)
SELECT d.project_id, d.day,
       ('[' || d.low || ':' || d.high || ']=' ||
        array_agg(coalesce(l.messages, 0) ORDER BY b)::text)::int8[]
  FROM (SELECT project_id, day, min(bucket) AS low, max(bucket) AS high
          FROM statistics_latency_daily GROUP BY project_id, day) d
 CROSS JOIN LATERAL generate_series(d.low, d.high) AS b
  LEFT JOIN statistics_latency_daily l
    ON l.project_id = d.project_id AND l.day = d.day AND l.bucket = b
 GROUP BY d.project_id, d.day, d.low, d.high;

DROP TABLE statistics_latency_daily;
