#!/usr/bin/env sh
# A wp-lite worker in one shell loop: long-poll a job, "handle" it, complete it.
# Needs curl and sed only.  WP_LITE_URL and WP_LITE_TOKEN as for the Python example.
B=${WP_LITE_URL:-http://127.0.0.1:8000}; H="Authorization: Bearer $WP_LITE_TOKEN"; J="Content-Type: application/json"
while :; do r=$(curl -s "$B/v1/worker/jobs/lease" -H "$H" -H "$J" -d '{"worker_id":"sh-1","wait_ms":25000}'); id=$(echo "$r" | sed -n 's/.*"job_id":"\([^"]*\)".*/\1/p'); tok=$(echo "$r" | sed -n 's/.*"lease_token":"\([^"]*\)".*/\1/p'); [ -n "$id" ] && echo "handling $id" && curl -s -o /dev/null "$B/v1/worker/jobs/$id/complete" -H "$H" -H "$J" -d "{\"worker_id\":\"sh-1\",\"lease_token\":\"$tok\",\"result\":{\"by\":\"sh\"}}"; done
