-- Users, media, analysis runs, per-model analyses and ML server health checks.

CREATE TYPE user_role AS ENUM ('USER', 'ADMIN');
CREATE TYPE run_status AS ENUM ('QUEUED', 'PROCESSING', 'PARTIALLY_ANALYZED', 'ANALYZED', 'FAILED', 'CANCELLED');
CREATE TYPE media_type AS ENUM ('VIDEO', 'IMAGE', 'AUDIO');
CREATE TYPE analysis_status AS ENUM ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED');

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL,
    first_name    text NOT NULL,
    last_name     text NOT NULL,
    password_hash text NOT NULL,
    role          user_role NOT NULL DEFAULT 'USER',
    is_active     boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_email_normalised CHECK (email = lower(btrim(email)))
);

CREATE TABLE media (
    id                     uuid PRIMARY KEY,
    user_id                uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    filename               text NOT NULL,
    storage_key            text NOT NULL,
    url                    text,
    mimetype               text NOT NULL,
    size                   bigint NOT NULL CHECK (size >= 0),
    description            text CHECK (char_length(description) <= 500),
    status                 run_status NOT NULL DEFAULT 'QUEUED',
    media_type             media_type NOT NULL,
    has_audio              boolean,
    metadata               jsonb,
    latest_analysis_run_id uuid,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT media_storage_key_key UNIQUE (storage_key)
);
CREATE INDEX media_user_id_created_at_idx ON media (user_id, created_at DESC);

CREATE TABLE analysis_runs (
    id              uuid PRIMARY KEY,
    media_id        uuid NOT NULL REFERENCES media (id) ON DELETE CASCADE,
    run_number      integer NOT NULL CHECK (run_number >= 1),
    status          run_status NOT NULL DEFAULT 'QUEUED',
    workflow_id     text NOT NULL,
    total_models    integer NOT NULL DEFAULT 0 CHECK (total_models >= 0),
    completed_count integer NOT NULL DEFAULT 0 CHECK (completed_count >= 0),
    failed_count    integer NOT NULL DEFAULT 0 CHECK (failed_count >= 0),
    error_message   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    CONSTRAINT analysis_runs_media_id_run_number_key UNIQUE (media_id, run_number),
    CONSTRAINT analysis_runs_workflow_id_key UNIQUE (workflow_id)
);
-- At most one active run per media: the race-free form of the re-run 409.
CREATE UNIQUE INDEX analysis_runs_one_active_per_media
    ON analysis_runs (media_id)
    WHERE status IN ('QUEUED', 'PROCESSING', 'PARTIALLY_ANALYZED');
CREATE INDEX analysis_runs_non_terminal_status_idx
    ON analysis_runs (status, updated_at)
    WHERE status IN ('QUEUED', 'PROCESSING', 'PARTIALLY_ANALYZED');

CREATE TABLE deepfake_analyses (
    id              uuid PRIMARY KEY,
    analysis_run_id uuid NOT NULL REFERENCES analysis_runs (id) ON DELETE CASCADE,
    model_name      text NOT NULL,
    status          analysis_status NOT NULL DEFAULT 'PENDING',
    prediction      text NOT NULL DEFAULT 'N/A',
    confidence      double precision NOT NULL DEFAULT 0,
    error_message   text,
    processing_time double precision,
    media_type      text,
    result_payload  jsonb,
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deepfake_analyses_run_model_key UNIQUE (analysis_run_id, model_name)
);
CREATE INDEX deepfake_analyses_model_name_idx ON deepfake_analyses (model_name);

CREATE TABLE server_health (
    id               uuid PRIMARY KEY,
    status           text NOT NULL,
    response_time_ms integer NOT NULL,
    stats_payload    jsonb,
    checked_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX server_health_checked_at_idx ON server_health (checked_at DESC);

-- updated_at is maintained on every write, whoever writes (unless the write sets it itself).
CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER media_touch BEFORE UPDATE ON media FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER analysis_runs_touch BEFORE UPDATE ON analysis_runs FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER deepfake_analyses_touch BEFORE UPDATE ON deepfake_analyses FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
