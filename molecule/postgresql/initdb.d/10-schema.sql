-- Runs once, on the first start, in POSTGRES_DB as POSTGRES_USER.
CREATE TABLE init_runs (
    id serial PRIMARY KEY,
    source text NOT NULL,
    listen_addresses text NOT NULL DEFAULT current_setting('listen_addresses'),
    -- The OS user of the *.sh scripts: the database's, as in the official image.
    os_user text,
    ran_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO init_runs (source) VALUES ('10-schema.sql');
