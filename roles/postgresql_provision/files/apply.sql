-- shipyard postgresql_provision: bring roles and privileges to the declared
-- state. Run by community.postgresql.postgresql_query with named_args, so a
-- literal percent sign is written twice. Identifiers and literals are quoted
-- by the server with format('%%I') and format('%%L'). Returns one row per
-- change made; no rows means nothing changed (the read phase returns one
-- JSON row and changes nothing).
--
-- Passwords arrive as SCRAM-SHA-256 verifiers computed on the controller
-- (never the plaintext), after quiet.sql turned the statement logs off for
-- this transaction. A statement that fails is re-raised with the role's name
-- and the server's message and detail, never with the failed statement as
-- its context, so no verifier reaches an error report or the server log.
CREATE OR REPLACE FUNCTION pg_temp.shipyard_apply(phase text, users json, dbs json,
                                                  update_password boolean, revoke_public boolean)
RETURNS SETOF text LANGUAGE plpgsql AS $shipyard$
DECLARE
  u record;
  d record;
  p text;
  err_detail text;
BEGIN
  IF phase = 'read' THEN
    -- What the controller needs to compute verifiers: the server's iterations
    -- for new ones and, to compare, the stored ones (pg_authid: superuser only,
    -- so only read when asked).
    p := coalesce(current_setting('scram_iterations', true), '4096');
    IF update_password THEN
      RETURN NEXT json_build_object('iterations', p, 'verifiers', (
        SELECT json_object_agg(a.rolname, a.rolpassword) FROM pg_authid a
        WHERE a.rolname IN (SELECT x.name FROM json_to_recordset(users) AS x(name text))))::text;
    ELSE
      RETURN NEXT json_build_object('iterations', p, 'verifiers', NULL)::text;
    END IF;
  ELSIF phase = 'roles' THEN
    FOR u IN SELECT * FROM json_to_recordset(users) AS x(name text, verifier text, state text)
             WHERE x.state = 'present' LOOP
      BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = u.name) THEN
          EXECUTE format('CREATE ROLE %%I LOGIN PASSWORD %%L', u.name, u.verifier);
          RETURN NEXT 'created role ' || quote_ident(u.name);
        -- The verifier was computed with the stored salt and iterations: equal
        -- exactly when the password is unchanged (reading pg_authid needs the
        -- superuser, as does setting another role's password anyway).
        ELSIF update_password AND u.verifier IS DISTINCT FROM
            (SELECT rolpassword FROM pg_authid WHERE rolname = u.name) THEN
          EXECUTE format('ALTER ROLE %%I LOGIN PASSWORD %%L', u.name, u.verifier);
          RETURN NEXT 'set the password of role ' || quote_ident(u.name);
        END IF;
      EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS err_detail = PG_EXCEPTION_DETAIL;
        RAISE EXCEPTION USING ERRCODE = SQLSTATE, MESSAGE = format('role %%s: %%s', quote_ident(u.name), SQLERRM)
          || CASE WHEN err_detail <> '' THEN ' (' || err_detail || ')' ELSE '' END;
      END;
    END LOOP;
  ELSIF phase = 'privileges' THEN
    FOR d IN SELECT x.name, x.owner, db.oid, db.datdba, db.datacl
             FROM json_to_recordset(dbs) AS x(name text, owner text, state text)
             JOIN pg_database db ON db.datname = x.name
             WHERE x.state = 'present' LOOP
      IF d.owner IS NOT NULL AND d.datdba <> (SELECT oid FROM pg_roles WHERE rolname = d.owner) THEN
        EXECUTE format('ALTER DATABASE %%I OWNER TO %%I', d.name, d.owner);
        RETURN NEXT 'changed the owner of database ' || quote_ident(d.name);
      END IF;
      IF revoke_public AND EXISTS (
          SELECT FROM pg_database db, aclexplode(coalesce(db.datacl, acldefault('d', db.datdba))) a
          WHERE db.oid = d.oid AND a.grantee = 0 AND a.privilege_type IN ('CONNECT', 'TEMPORARY')) THEN
        EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %%I FROM PUBLIC', d.name);
        RETURN NEXT 'revoked PUBLIC access to database ' || quote_ident(d.name);
      END IF;
    END LOOP;
    FOR u IN SELECT x.name, x.db, x.privs, ro.oid AS role_oid
             FROM json_to_recordset(users) AS x(name text, state text, db text, privs text[])
             JOIN pg_roles ro ON ro.rolname = x.name
             WHERE x.state = 'present' AND x.db IS NOT NULL LOOP
      IF NOT EXISTS (SELECT FROM pg_database WHERE datname = u.db) THEN
        RAISE EXCEPTION 'database %% (privileges of role %%) does not exist', quote_ident(u.db), quote_ident(u.name);
      END IF;
      FOREACH p IN ARRAY (SELECT array_agg(DISTINCT e) FROM unnest(
          CASE WHEN 'ALL' = ANY (u.privs) THEN ARRAY['CONNECT', 'CREATE', 'TEMPORARY'] ELSE u.privs END) e) LOOP
        IF p NOT IN ('CONNECT', 'CREATE', 'TEMPORARY') THEN
          RAISE EXCEPTION 'unknown database privilege %%', p;
        END IF;
        IF NOT EXISTS (
            SELECT FROM pg_database db, aclexplode(coalesce(db.datacl, acldefault('d', db.datdba))) a
            WHERE db.datname = u.db AND a.grantee = u.role_oid AND a.privilege_type = p) THEN
          EXECUTE format('GRANT %%s ON DATABASE %%I TO %%I', p, u.db, u.name);
          RETURN NEXT 'granted ' || p || ' on database ' || quote_ident(u.db) || ' to ' || quote_ident(u.name);
        END IF;
      END LOOP;
    END LOOP;
  ELSIF phase = 'absent' THEN
    FOR u IN SELECT x.name FROM json_to_recordset(users) AS x(name text, state text)
             JOIN pg_roles ro ON ro.rolname = x.name
             WHERE x.state = 'absent' LOOP
      FOR d IN SELECT db.datname FROM pg_database db, aclexplode(db.datacl) a, pg_roles ro
               WHERE ro.rolname = u.name AND a.grantee = ro.oid GROUP BY db.datname LOOP
        EXECUTE format('REVOKE ALL ON DATABASE %%I FROM %%I', d.datname, u.name);
      END LOOP;
      EXECUTE format('DROP ROLE %%I', u.name);
      RETURN NEXT 'dropped role ' || quote_ident(u.name);
    END LOOP;
  END IF;
END
$shipyard$;
SELECT change FROM pg_temp.shipyard_apply(%(phase)s, %(users)s::json, %(dbs)s::json,
                                          %(update_password)s, %(revoke_public)s) AS change;
