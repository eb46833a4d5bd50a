#!/bin/bash
# Not executable, so postgres-first-run sources it: its functions are at hand.
docker_process_sql <<<"INSERT INTO init_runs (source, os_user) VALUES ('30-sourced.sh', '$(id -un)');"
