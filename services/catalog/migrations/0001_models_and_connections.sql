-- The catalog schema: models (curated + imported) and Hugging Face
-- connections. Applied by common/db's migration runner with search_path set
-- to the catalog schema.

CREATE TABLE models (
  name                text PRIMARY KEY,
  display_name        text NOT NULL DEFAULT '',
  description         text NOT NULL DEFAULT '',
  -- hangar.v1.ModelSource / ModelState numbers.
  source              smallint NOT NULL CHECK (source BETWEEN 1 AND 3),
  state               smallint NOT NULL CHECK (state BETWEEN 1 AND 3),
  failure_reason      text NOT NULL DEFAULT '',
  family              text NOT NULL DEFAULT '',
  architecture        text NOT NULL DEFAULT '',
  parameter_count     bigint NOT NULL DEFAULT 0,
  context_length      integer NOT NULL DEFAULT 0,
  license             text NOT NULL DEFAULT '',
  default_dtype       text NOT NULL DEFAULT '',
  -- [{"dtype": "bfloat16", "bytes": 16060522496}, ...]
  weight_sizes        jsonb NOT NULL DEFAULT '[]',
  -- [{"engine": "ENGINE_VLLM", "quantization": "QUANTIZATION_FP8",
  --   "min_gpu_memory_bytes": 26843545600}, ...]
  supported_recipes   jsonb NOT NULL DEFAULT '[]',
  tags                text[] NOT NULL DEFAULT '{}',
  runs_on_cpu         boolean NOT NULL DEFAULT false,
  hf_repo             text NOT NULL DEFAULT '',
  revision            text NOT NULL DEFAULT '',
  resolved_revision   text NOT NULL DEFAULT '',
  connection          text NOT NULL DEFAULT '',
  local_path          text NOT NULL DEFAULT '',
  -- The weights in the model store (hangar.v1.Preparation). Progress updates
  -- do not change the etag.
  preparation_state   smallint NOT NULL DEFAULT 1,
  preparation_done    bigint NOT NULL DEFAULT 0,
  preparation_total   bigint NOT NULL DEFAULT 0,
  preparation_message text NOT NULL DEFAULT '',
  preparation_path    text NOT NULL DEFAULT '',
  preparation_sha256  text NOT NULL DEFAULT '',
  preparation_failure text NOT NULL DEFAULT '',
  -- Bumped by every metadata update; the etag is derived from it.
  version             bigint NOT NULL DEFAULT 1,
  create_time         timestamptz NOT NULL DEFAULT now(),
  update_time         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX models_source_idx ON models (source);
CREATE INDEX models_family_idx ON models (family);
CREATE INDEX models_tags_idx ON models USING gin (tags);

CREATE TABLE connections (
  name          text PRIMARY KEY,
  description   text NOT NULL DEFAULT '',
  -- The token sealed by common/auth's SecretBox (AES-256-GCM, the connection
  -- name as associated data): "v1:" + base64. Never the plaintext.
  sealed_token  text NOT NULL,
  token_prefix  text NOT NULL DEFAULT '',
  create_time   timestamptz NOT NULL DEFAULT now()
);
