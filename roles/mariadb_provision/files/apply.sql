-- shipyard mariadb_provision: users -> databases -> grants -> absent
-- databases -> absent users, in one anonymous block. Run by
-- community.mysql.mysql_query after SET @shipyard_spec, without arguments (so
-- a percent sign is itself), in a session whose sql_mode the role sets, so
-- the quoting below means the same whatever the server's. Account names and
-- literals are quoted by the server with QUOTE(), identifiers by doubling
-- backticks; in grants, _ and % in database names are escaped so they match
-- only that database. Passwords arrive as mysql_native_password hashes
-- computed on the controller, never as plaintext; a failing statement on an
-- account is re-signalled with the account and the server's message only.
-- Every change made is appended to @shipyard_changes.
BEGIN NOT ATOMIC
  SET @shipyard_changes = '';
  FOR u IN (SELECT j.name, j.host, j.hash FROM JSON_TABLE(@shipyard_spec, '$.users[*]' COLUMNS (
              name VARCHAR(128) PATH '$.name', host VARCHAR(255) PATH '$.host',
              hash VARCHAR(64) PATH '$.hash', state VARCHAR(8) PATH '$.state')) AS j
            WHERE j.state = 'present') DO
    BEGIN
      DECLARE EXIT HANDLER FOR SQLEXCEPTION
      BEGIN
        GET DIAGNOSTICS CONDITION 1 @shipyard_error = MESSAGE_TEXT;
        SET @shipyard_error = CONCAT('user ', QUOTE(u.name), '@', QUOTE(u.host), ': ', @shipyard_error);
        RESIGNAL SET MESSAGE_TEXT = @shipyard_error;
      END;
      IF NOT EXISTS (SELECT 1 FROM mysql.user WHERE User = u.name AND Host = u.host) THEN
        EXECUTE IMMEDIATE CONCAT('CREATE USER ', QUOTE(u.name), '@', QUOTE(u.host),
                                 ' IDENTIFIED VIA mysql_native_password USING ', QUOTE(u.hash));
        SET @shipyard_changes = CONCAT(@shipyard_changes, 'created user ', QUOTE(u.name), '@', QUOTE(u.host), '\n');
      -- The hash is unsalted, so an unchanged password gives the stored one back.
      ELSEIF JSON_VALUE(@shipyard_spec, '$.update_password') = 'always' AND NOT EXISTS (
          SELECT 1 FROM mysql.user WHERE User = u.name AND Host = u.host
          AND plugin = 'mysql_native_password' AND authentication_string = u.hash) THEN
        EXECUTE IMMEDIATE CONCAT('ALTER USER ', QUOTE(u.name), '@', QUOTE(u.host),
                                 ' IDENTIFIED VIA mysql_native_password USING ', QUOTE(u.hash));
        SET @shipyard_changes = CONCAT(@shipyard_changes, 'set the password of ', QUOTE(u.name), '@', QUOTE(u.host), '\n');
      END IF;
    END;
  END FOR;
  FOR d IN (SELECT j.name, j.encoding, j.collation FROM JSON_TABLE(@shipyard_spec, '$.databases[*]' COLUMNS (
              name VARCHAR(128) PATH '$.name', encoding VARCHAR(64) PATH '$.encoding',
              collation VARCHAR(64) PATH '$.collation', state VARCHAR(8) PATH '$.state')) AS j
            WHERE j.state = 'present') DO
    IF NOT EXISTS (SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = d.name) THEN
      EXECUTE IMMEDIATE CONCAT('CREATE DATABASE `', REPLACE(d.name, '`', '``'), '`',
                               ' CHARACTER SET ', QUOTE(d.encoding),
                               IF(d.collation IS NULL, '', CONCAT(' COLLATE ', QUOTE(d.collation))));
      SET @shipyard_changes = CONCAT(@shipyard_changes, 'created database ', QUOTE(d.name), '\n');
    END IF;
  END FOR;
  FOR g IN (SELECT j.name, j.host, j.db, UPPER(j.priv) AS priv,
                   REPLACE(REPLACE(REPLACE(j.db, '\\', '\\\\'), '_', '\\_'), '%', '\\%') AS pattern
            FROM JSON_TABLE(@shipyard_spec, '$.users[*]' COLUMNS (
              name VARCHAR(128) PATH '$.name', host VARCHAR(255) PATH '$.host', db VARCHAR(128) PATH '$.db',
              state VARCHAR(8) PATH '$.state', NESTED PATH '$.privs[*]' COLUMNS (priv VARCHAR(64) PATH '$'))) AS j
            WHERE j.state = 'present' AND j.db IS NOT NULL AND j.priv IS NOT NULL) DO
    IF g.priv NOT IN ('ALL', 'SELECT', 'INSERT', 'UPDATE', 'DELETE', 'CREATE', 'DROP', 'INDEX', 'ALTER',
                      'REFERENCES', 'CREATE TEMPORARY TABLES', 'LOCK TABLES', 'EXECUTE', 'CREATE VIEW',
                      'SHOW VIEW', 'CREATE ROUTINE', 'ALTER ROUTINE', 'EVENT', 'TRIGGER') THEN
      SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'unknown privilege in mariadb_provision_users';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = g.db) THEN
      SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'a database in mariadb_provision_users[].db does not exist';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM mysql.db
                   WHERE Host = g.host AND User = g.name AND Db = g.pattern AND 'Y' = CASE g.priv
                     WHEN 'ALL' THEN IF(CONCAT(Select_priv, Insert_priv, Update_priv, Delete_priv, Create_priv,
                       Drop_priv, References_priv, Index_priv, Alter_priv, Create_tmp_table_priv,
                       Lock_tables_priv, Create_view_priv, Show_view_priv, Create_routine_priv,
                       Alter_routine_priv, Execute_priv, Event_priv, Trigger_priv) = REPEAT('Y', 18), 'Y', 'N')
                     WHEN 'SELECT' THEN Select_priv WHEN 'INSERT' THEN Insert_priv
                     WHEN 'UPDATE' THEN Update_priv WHEN 'DELETE' THEN Delete_priv
                     WHEN 'CREATE' THEN Create_priv WHEN 'DROP' THEN Drop_priv
                     WHEN 'INDEX' THEN Index_priv WHEN 'ALTER' THEN Alter_priv
                     WHEN 'REFERENCES' THEN References_priv WHEN 'CREATE TEMPORARY TABLES' THEN Create_tmp_table_priv
                     WHEN 'LOCK TABLES' THEN Lock_tables_priv WHEN 'EXECUTE' THEN Execute_priv
                     WHEN 'CREATE VIEW' THEN Create_view_priv WHEN 'SHOW VIEW' THEN Show_view_priv
                     WHEN 'CREATE ROUTINE' THEN Create_routine_priv WHEN 'ALTER ROUTINE' THEN Alter_routine_priv
                     WHEN 'EVENT' THEN Event_priv WHEN 'TRIGGER' THEN Trigger_priv END) THEN
      EXECUTE IMMEDIATE CONCAT('GRANT ', IF(g.priv = 'ALL', 'ALL PRIVILEGES', g.priv),
                               ' ON `', REPLACE(g.pattern, '`', '``'), '`.* TO ', QUOTE(g.name), '@', QUOTE(g.host));
      SET @shipyard_changes = CONCAT(@shipyard_changes, 'granted ', g.priv, ' on ', QUOTE(g.db), ' to ',
                                     QUOTE(g.name), '@', QUOTE(g.host), '\n');
    END IF;
  END FOR;
  FOR d IN (SELECT j.name FROM JSON_TABLE(@shipyard_spec, '$.databases[*]' COLUMNS (
              name VARCHAR(128) PATH '$.name', state VARCHAR(8) PATH '$.state')) AS j
            WHERE j.state = 'absent') DO
    IF EXISTS (SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = d.name) THEN
      EXECUTE IMMEDIATE CONCAT('DROP DATABASE `', REPLACE(d.name, '`', '``'), '`');
      SET @shipyard_changes = CONCAT(@shipyard_changes, 'dropped database ', QUOTE(d.name), '\n');
    END IF;
  END FOR;
  FOR u IN (SELECT j.name, j.host FROM JSON_TABLE(@shipyard_spec, '$.users[*]' COLUMNS (
              name VARCHAR(128) PATH '$.name', host VARCHAR(255) PATH '$.host', state VARCHAR(8) PATH '$.state')) AS j
            WHERE j.state = 'absent') DO
    IF EXISTS (SELECT 1 FROM mysql.user WHERE User = u.name AND Host = u.host) THEN
      EXECUTE IMMEDIATE CONCAT('DROP USER ', QUOTE(u.name), '@', QUOTE(u.host));
      SET @shipyard_changes = CONCAT(@shipyard_changes, 'dropped user ', QUOTE(u.name), '@', QUOTE(u.host), '\n');
    END IF;
  END FOR;
END
