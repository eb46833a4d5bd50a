-- shipyard postgresql_provision: create and drop databases. CREATE DATABASE
-- cannot run inside a transaction or a function, so psql generates the
-- statements (identifiers and literals quoted by the server with format())
-- and runs each on its own with \gexec. The declared list comes in as the
-- psql variable "spec" (JSON, no secrets in it).
\set ON_ERROR_STOP on
SELECT format('CREATE DATABASE %I TEMPLATE template0', s.name)
       || CASE WHEN s.owner IS NULL THEN '' ELSE format(' OWNER %I', s.owner) END
       || format(' ENCODING %L', coalesce(s.encoding, 'UTF8'))
       || CASE WHEN s.lc_collate IS NULL THEN '' ELSE format(' LC_COLLATE %L', s.lc_collate) END
       || CASE WHEN s.lc_ctype IS NULL THEN '' ELSE format(' LC_CTYPE %L', s.lc_ctype) END
  FROM json_to_recordset(:'spec') AS s(name text, owner text, encoding text, lc_collate text,
                                       lc_ctype text, state text)
 WHERE s.state = 'present' AND NOT EXISTS (SELECT FROM pg_database WHERE datname = s.name)
\gexec
SELECT format('DROP DATABASE %I WITH (FORCE)', s.name)
  FROM json_to_recordset(:'spec') AS s(name text, state text)
 WHERE s.state = 'absent' AND EXISTS (SELECT FROM pg_database WHERE datname = s.name)
\gexec
