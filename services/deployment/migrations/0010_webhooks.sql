-- Webhooks (services/deployment/webhooks/): each deployment's target and the
-- durable outbox of deliveries.
--
-- A target row, once made, stays: removing the webhook empties url and
-- secret, so a retried CreateDeployment (INSERT ... ON CONFLICT DO NOTHING)
-- never brings a removed webhook back nor mints a second secret.
CREATE TABLE webhook_targets (
  deployment     text PRIMARY KEY,
  -- '' : no webhook.
  url            text NOT NULL,
  -- "whsec_..." (kept to sign; never returned after the call that set it).
  secret         text NOT NULL,
  update_micros  bigint NOT NULL
);

-- One row per (deployment, revision, event): the reconciler may report a
-- state more than once (at least once), the row is made once.
CREATE TABLE webhook_deliveries (
  id                   bigserial PRIMARY KEY,
  deployment           text NOT NULL,
  revision             bigint NOT NULL,
  -- "deployment.deployed", "deployment.failed", "deployment.undeployed".
  event                text NOT NULL,
  -- The event's facts, sent in the body.
  display_name         text NOT NULL,
  state                text NOT NULL,
  reason               text NOT NULL,
  event_micros         bigint NOT NULL,
  -- Where the last attempt went (the target's URL when it was made).
  url                  text NOT NULL,
  -- hangar.v1.WebhookDelivery.Status: 1 PENDING, 2 DELIVERED, 3 FAILED.
  status               smallint NOT NULL,
  attempts             integer NOT NULL DEFAULT 0,
  last_http_status     integer NOT NULL DEFAULT 0,
  last_error           text NOT NULL DEFAULT '',
  create_micros        bigint NOT NULL,
  last_attempt_micros  bigint,
  -- PENDING: when the next attempt is due (while claimed: when the claim
  -- lapses and another sender may take it).
  next_attempt_micros  bigint,
  -- The sender holding the attempt in flight; NULL when none.
  claim                text,
  UNIQUE (deployment, revision, event)
);
CREATE INDEX webhook_deliveries_due
  ON webhook_deliveries (next_attempt_micros, id) WHERE status = 1;
CREATE INDEX webhook_deliveries_by_deployment
  ON webhook_deliveries (deployment, id);
