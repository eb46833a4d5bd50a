-- Runs once, on the first start, in POSTGRES_DB as POSTGRES_USER.
CREATE TABLE init_runs (
    id serial PRIMARY KEY,
    source text NOT NULL,
    listen_addresses text NOT NULL DEFAULT current_setting('listen_addresses'),
    ran_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO init_runs (source) VALUES ('10-schema.sql');
