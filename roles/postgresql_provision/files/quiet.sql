-- shipyard postgresql_provision: keep the rest of this transaction out of the
-- server's statement logs, whatever an operator configured. It must be a
-- statement of its own: log_statement is read when a statement arrives, so a
-- SET in the same query string comes too late. The role sends no password,
-- only SCRAM verifiers, but not even those go where a log could keep them: a
-- login that may not change these settings is refused here, before any is sent.
-- Run by postgresql_query with named_args, so a percent sign is written twice.
DO $quiet$
BEGIN
  PERFORM set_config('log_statement', 'none', true),
          set_config('log_min_duration_statement', '-1', true),
          set_config('log_min_duration_sample', '-1', true),
          set_config('log_min_error_statement', 'panic', true);
EXCEPTION WHEN insufficient_privilege THEN
  RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege', MESSAGE = format(
    'the login role %%s may not turn the statement logs off for its session (%%s); log in as a superuser, '
    || 'or GRANT SET ON PARAMETER log_statement, log_min_duration_statement, log_min_duration_sample, '
    || 'log_min_error_statement TO %%s', quote_ident(current_user), SQLERRM, quote_ident(current_user));
END
$quiet$
