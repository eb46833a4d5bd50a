#!/bin/sh
# Packages installed during `docker build` must not start their services:
# there is no init to own them, and the image's supervisor starts them later.
exit 101
