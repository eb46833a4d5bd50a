#!/bin/bash
# The naive entrypoint of bench/init_stop.py: bash as PID 1, services
# started through their init scripts, a trap loop to stop them.
service mariadb start
service apache2 start
trap 'service apache2 stop; service mariadb stop; exit' TERM INT
while true; do sleep 1; done
