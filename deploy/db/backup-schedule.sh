#!/bin/sh
# The compose `backup` service: creates the pgBackRest stanza, then takes a full backup when
# the newest full one is older than BACKUP_FULL_EVERY seconds (a week), a differential when
# the newest backup of any type is older than BACKUP_DIFF_EVERY (a day), and checks again every
# BACKUP_CHECK_EVERY seconds. Each backup expires what the retention in pgbackrest.conf no
# longer keeps. Written here rather than as crontab lines: a schedule that looks at the
# repository catches up after the stack was down, and sees the S3 settings the service's
# environment gives pgBackRest (cron would start jobs without them).
# `backup-schedule --once` makes one pass and exits.
set -eu

stanza=${PGBACKREST_STANZA:-branchloans}
full_every=${BACKUP_FULL_EVERY:-604800}
diff_every=${BACKUP_DIFF_EVERY:-86400}
check_every=${BACKUP_CHECK_EVERY:-300}

newest_stop() {  # the stop time (epoch seconds) of the newest backup of type $1 (or any), or 0
    pgbackrest --stanza="$stanza" --output=json info |
        jq --arg type "${1:-}" \
            '[.[0].backup[]? | select($type == "" or .type == $type) | .timestamp.stop] | max // 0'
}

one_pass() {
    now=$(date +%s)
    if [ $((now - $(newest_stop full))) -ge "$full_every" ]; then
        kind=full
    elif [ $((now - $(newest_stop))) -ge "$diff_every" ]; then
        kind=diff
    else
        return 0
    fi
    pgbackrest --stanza="$stanza" --type="$kind" backup
}

until pg_isready --quiet; do sleep 2; done
# Idempotent: succeeds when the stanza exists and matches this database.
pgbackrest --stanza="$stanza" stanza-create

if [ "${1:-}" = --once ]; then
    one_pass
    exit
fi
while :; do
    # A failed backup is logged and tried again at the next check; the age alert
    # (BranchLoansBackupTooOld) fires if none succeeds for 26 h.
    one_pass || echo "backup-schedule: the backup failed; trying again in ${check_every} s" >&2
    sleep "$check_every"
done
