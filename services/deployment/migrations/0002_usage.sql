-- Token usage reported by the gateway. Append-only: rows are never updated
-- or deleted (a deleted deployment keeps its usage). A report id is
-- recorded once, so a retried batch is counted once.

CREATE TABLE usage_reports (
  report_id     text PRIMARY KEY,
  create_micros bigint NOT NULL
);

CREATE TABLE token_usage (
  report_id         text NOT NULL REFERENCES usage_reports (report_id),
  -- Position of the row in its report.
  item              integer NOT NULL,
  api_key           text NOT NULL,
  deployment        text NOT NULL,
  revision          bigint NOT NULL,
  start_micros      bigint NOT NULL,
  end_micros        bigint NOT NULL,
  -- The UTC day of start_micros, for per-day sums.
  day               date NOT NULL,
  requests          bigint NOT NULL CHECK (requests >= 0),
  prompt_tokens     bigint NOT NULL CHECK (prompt_tokens >= 0),
  completion_tokens bigint NOT NULL CHECK (completion_tokens >= 0),
  PRIMARY KEY (report_id, item)
);
CREATE INDEX token_usage_day ON token_usage (day, deployment, api_key);
