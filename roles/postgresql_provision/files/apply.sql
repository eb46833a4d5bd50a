-- shipyard postgresql_provision: bring roles and privileges to the declared
-- state. Run by community.postgresql.postgresql_query with named_args, so a
-- literal percent sign is written twice. Identifiers and literals are quoted
-- by the server with format('%%I') and format('%%L'). Returns one row per
-- change made; no rows means nothing changed.
SET LOCAL log_statement = 'none';
SET LOCAL log_min_error_statement = 'panic';
CREATE OR REPLACE FUNCTION pg_temp.shipyard_apply(phase text, users json, dbs json,
                                                  update_password boolean, revoke_public boolean)
RETURNS SETOF text LANGUAGE plpgsql AS $shipyard$
DECLARE
  u record;
  d record;
  p text;
  r_oid oid;
BEGIN
  IF phase = 'roles' THEN
    FOR u IN SELECT * FROM json_to_recordset(users) AS x(name text, password text, state text)
             WHERE x.state = 'present' LOOP
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = u.name) THEN
        EXECUTE format('CREATE ROLE %%I LOGIN PASSWORD %%L', u.name, u.password);
        RETURN NEXT 'created role ' || quote_ident(u.name);
      ELSIF update_password THEN
        EXECUTE format('ALTER ROLE %%I LOGIN PASSWORD %%L', u.name, u.password);
        RETURN NEXT 'set the password of role ' || quote_ident(u.name);
      END IF;
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
