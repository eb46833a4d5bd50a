#!/bin/bash
# The naive entrypoint (see the Dockerfile): no readiness, no exit code.
service rsyslog start
service mariadb start
service apache2 start
trap 'service apache2 stop; service mariadb stop; exit' TERM INT
while true; do sleep 1; done
