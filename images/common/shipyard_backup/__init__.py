"""shipyard-backup: scheduled, archived and verified backups of the image's database.

PostgreSQL through pgBackRest, MariaDB through mariadb-backup and its binary
logs, both to S3. docs/architecture.md, decision 21, says why.
"""
