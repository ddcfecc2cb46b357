#!/usr/bin/env bash
# flare-dispatch-action: sign and POST a dispatch (contract §2.1-2.3, §2.8), then in
# await mode follow the execution to its end. Needs only what a stock ubuntu-latest
# runner has: bash, curl, openssl, jq.
#
# Inputs come as INPUT_* variables (action.yml); the target comes from the GITHUB_*
# variables a runner sets. Knobs for tests (not inputs): FLARE_DISPATCH_BACKOFF_SEC
# (default 5: attempt N waits N times this), FLARE_DISPATCH_POLL_SEC (default 5).
set -uo pipefail

backoff_base="${FLARE_DISPATCH_BACKOFF_SEC:-5}"
poll_every="${FLARE_DISPATCH_POLL_SEC:-5}"
attempts=3
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Workflow commands: data escapes %, CR, LF; properties also : and , (GitHub's rules),
# so text from the server cannot inject a command. Messages are capped at 500 bytes.
esc_data() {
	local s="${1:0:500}"
	s="${s//%/%25}"
	s="${s//$'\r'/%0D}"
	s="${s//$'\n'/%0A}"
	printf '%s' "$s"
}
esc_prop() {
	local s
	s="$(esc_data "$1")"
	s="${s//:/%3A}"
	s="${s//,/%2C}"
	printf '%s' "$s"
}
annotate() { # level message [title]
	printf '::%s title=%s::%s\n' "$1" "$(esc_prop "${3:-flare-dispatch}")" "$(esc_data "$2")"
}
fail() { # message [title]
	annotate error "$1" "${2:-flare-dispatch}"
	exit 1
}
mask() { # every line of a value, as GitHub masks line by line
	local line
	while IFS= read -r line; do
		[ -n "$line" ] && printf '::add-mask::%s\n' "$line"
	done <<<"$1"
}
output() { # name value; values are one line
	local v="${2//$'\r'/}"
	v="${v//$'\n'/ }"
	printf '%s=%s\n' "$1" "$v" >>"${GITHUB_OUTPUT:-/dev/null}"
}
sha256_8() { printf '%s' "$1" | openssl dgst -sha256 -r | cut -c1-8; }

# --- inputs, all checked before any network call ---------------------------------
run="${INPUT_RUN:-}"
endpoint="${INPUT_ENDPOINT:-}"
secret="${INPUT_HMAC_SECRET:-}"
inputs="${INPUT_INPUTS:-}"
mode="${INPUT_MODE:-fire-and-forget}"
check_name="${INPUT_CHECK_NAME:-}"
installation_id="${INPUT_INSTALLATION_ID:-0}"
timeout_minutes="${INPUT_TIMEOUT_MINUTES:-30}"
key="${INPUT_IDEMPOTENCY_KEY:-}"

[ -n "$secret" ] && mask "$secret"
[ -n "$inputs" ] || inputs='{}'
[ -n "$mode" ] || mode=fire-and-forget
[ -n "$installation_id" ] || installation_id=0
[ -n "$timeout_minutes" ] || timeout_minutes=30

[[ "$run" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || fail "input run: \"$run\" is not a run name (for example offload-test)" "flare-dispatch: run"
[[ "$endpoint" =~ ^https?://[^[:space:]]+$ ]] || fail "input endpoint: \"$endpoint\" is not an http(s) URL" "flare-dispatch: endpoint"
while [ "${endpoint%/}" != "$endpoint" ]; do endpoint="${endpoint%/}"; done
[ -n "$secret" ] || fail "input hmac-secret is empty: pass the dispatcher's HMAC_SECRET, e.g. \${{ secrets.FLARE_DISPATCH_SECRET }}" "flare-dispatch: hmac-secret"
case "$mode" in
fire-and-forget | await) ;;
*) fail "input mode: \"$mode\" must be fire-and-forget or await" "flare-dispatch: mode" ;;
esac
jq -e 'type == "object"' <<<"$inputs" >/dev/null 2>&1 || fail "input inputs: not a JSON object: ${inputs:0:200}" "flare-dispatch: inputs"
[[ "$installation_id" =~ ^[0-9]+$ ]] || fail "input installation-id: \"$installation_id\" is not a non-negative integer" "flare-dispatch: installation-id"
[[ "$timeout_minutes" =~ ^[0-9]+(\.[0-9]+)?$ ]] && [ "$(jq -n "$timeout_minutes > 0")" = true ] ||
	fail "input timeout-minutes: \"$timeout_minutes\" is not a positive number" "flare-dispatch: timeout-minutes"
if [ -n "$key" ] && ! [[ "$key" =~ ^[A-Za-z0-9:_-]{3,128}$ ]]; then
	fail "input idempotency-key: must match ^[A-Za-z0-9:_-]{3,128}\$" "flare-dispatch: idempotency-key"
fi
repo="${GITHUB_REPOSITORY:-}"
[ -n "$repo" ] || fail "GITHUB_REPOSITORY is not set: run this action in a GitHub Actions job"

# The commit: on pull requests the head commit (what the author pushed), not the
# merge commit GitHub builds (GITHUB_SHA there).
sha="${GITHUB_SHA:-}"
ref="${GITHUB_REF:-}"
pr=0
case "${GITHUB_EVENT_NAME:-}" in
pull_request | pull_request_target)
	if [ -r "${GITHUB_EVENT_PATH:-}" ]; then
		head="$(jq -r '.pull_request.head.sha // empty' "$GITHUB_EVENT_PATH")"
		[ -n "$head" ] && sha="$head"
		pr="$(jq -r '.pull_request.number // 0' "$GITHUB_EVENT_PATH")"
	fi
	[ -n "${GITHUB_HEAD_REF:-}" ] && ref="refs/heads/$GITHUB_HEAD_REF"
	;;
esac
[ -n "$sha" ] || fail "GITHUB_SHA is not set: run this action in a GitHub Actions job"
[ -n "$ref" ] || ref=refs/heads/main

# A re-run of the job is a new attempt: ask for a fresh execution rather than the
# dispatcher's id for (run, repository, commit), which would return the old one.
if [ -z "$key" ] && [ "${GITHUB_RUN_ATTEMPT:-1}" -gt 1 ] 2>/dev/null; then
	key="$(printf '%s:%s:%s:attempt-%s' "$run" "${repo//\//_}" "${sha:0:12}" "$GITHUB_RUN_ATTEMPT" | tr -c 'A-Za-z0-9:_\n-' '-')"
	key="${key:0:128}"
fi

# --- the body: compact JSON written once; the same bytes are signed and posted -------
body="$tmp/body.json"
jq -cnj \
	--arg run "$run" --arg repo "$repo" --arg ref "$ref" --arg sha "$sha" --arg actor "${GITHUB_ACTOR:-}" \
	--argjson inst "$installation_id" --argjson pr "$pr" --argjson inputs "$inputs" \
	--arg runid "${GITHUB_RUN_ID:-}" --arg job "${GITHUB_JOB:-}" '
	{run: $run,
	 github: ({repo: $repo, ref: $ref, sha: $sha}
		+ (if $actor != "" then {actor: $actor} else {} end)
		+ (if $pr > 0 then {pr_number: $pr} else {} end)
		+ (if $inst > 0 then {installation_id: $inst} else {} end)),
	 inputs: $inputs,
	 trigger: ({}
		+ (if $runid != "" then {workflow_run_id: ($runid | tonumber? // $runid)} else {} end)
		+ (if $job != "" then {job_id: $job} else {} end))}' >"$body" ||
	fail "could not build the request body"
sig="$(openssl dgst -sha256 -hmac "$secret" -r <"$body" | cut -d' ' -f1)"
[[ "$sig" =~ ^[0-9a-f]{64}$ ]] || fail "openssl could not sign the body"

run_uri="$(jq -rn --arg r "$run" '$r | @uri')"
url="$endpoint/v1/dispatch/$run_uri"
label="flare-dispatch/$run${check_name:+ ($check_name)}"
echo "Dispatching $label for $repo@${sha:0:12} to $endpoint"

# --- POST with retries: 000 (no answer), 429 and 5xx are transient; others are final ---
resp="$tmp/resp.json"
hdrs="$tmp/headers"
code=000
gave_up=""
for ((attempt = 1; attempt <= attempts; attempt++)); do
	curl_args=(-sS -o "$resp" -D "$hdrs" -w '%{http_code}' --connect-timeout 10 --max-time 60
		-X POST -H 'Content-Type: application/json' -H "X-FlareDispatch-Signature: sha256=$sig"
		--data-binary "@$body")
	[ -n "$key" ] && curl_args+=(-H "Idempotency-Key: $key")
	: >"$resp"
	: >"$hdrs"
	code="$(curl "${curl_args[@]}" "$url" 2>"$tmp/curl.err")" || true
	[[ "$code" =~ ^[0-9]{3}$ ]] || code=000
	case "$code" in
	000 | 429 | 5??) ;;
	*) break ;;
	esac
	why="HTTP $code"
	[ "$code" = 000 ] && why="no answer ($(head -c 300 "$tmp/curl.err" | tr -d '\r\n'))"
	if ((attempt == attempts)); then
		gave_up=1
		break
	fi
	wait_s=$((attempt * backoff_base))
	retry_after="$(grep -i '^retry-after:' "$hdrs" | head -1 | tr -d '\r' | cut -d: -f2 | tr -d ' ')"
	if [[ "$retry_after" =~ ^[0-9]+$ ]]; then
		wait_s=$((retry_after > 120 ? 120 : retry_after))
	fi
	annotate warning "attempt $attempt of $attempts: $why; retrying in ${wait_s}s"
	sleep "$wait_s"
done

field() { jq -r "$1 // empty" "$resp" 2>/dev/null; }
case "$code" in
202) ;;
000) fail "the dispatcher at $endpoint did not answer after $attempts attempts: $(head -c 300 "$tmp/curl.err" | tr -d '\r\n'). Check the endpoint input and that the Worker is deployed." ;;
401)
	local_fp="$(sha256_8 "$secret")"
	remote_fp="$(field .dispatcher_secret_fingerprint)"
	msg="the dispatcher refused the signature (401). Secret fingerprints: local $local_fp, dispatcher ${remote_fp:-unknown}."
	if [ -n "$remote_fp" ] && [ "$remote_fp" != "$local_fp" ]; then
		msg+=" The hmac-secret input is not the dispatcher's HMAC_SECRET"
		[[ "$secret" == *$'\n' || "$secret" == *' ' ]] && msg+=" (the input ends with whitespace: a trailing newline is the usual cause)"
		msg+="; set the repository secret to the value given to 'wrangler secret put HMAC_SECRET'."
	elif [ -n "$remote_fp" ]; then
		msg+=" They match, so the body was changed on the way (a proxy re-encoding it?)."
	fi
	echo "local secret fingerprint:      $local_fp"
	echo "dispatcher secret fingerprint: ${remote_fp:-unknown}"
	fail "$msg" "flare-dispatch: unauthorized"
	;;
*)
	err="$(field .error)"
	msg="$(field .message)"
	fld="$(field .field)"
	detail="$(jq -r 'if .detail == null then empty elif (.detail | type) == "string" then .detail else (.detail | tojson) end' "$resp" 2>/dev/null)"
	[ -n "$msg" ] || msg="$(head -c 300 "$resp" | tr -d '\r')"
	text="dispatch refused (HTTP $code${err:+ $err}): $msg"
	[ -n "$fld" ] && text+=" [field: $fld]"
	[ -n "$detail" ] && [ "$detail" != "$fld: $msg" ] && text+=" - $detail"
	[ -n "$gave_up" ] && text+=" (after $attempts attempts)"
	fail "$text" "flare-dispatch: ${fld:-${err:-HTTP $code}}"
	;;
esac

exec_id="$(field .executionId)"
logs_url="$(field .logsUrl)"
details_url="$(field .detailsUrl)"
[ -n "$exec_id" ] || fail "the dispatcher answered 202 without an executionId: $(head -c 300 "$resp")"
token=""
if [[ "$logs_url" == *"t="* ]]; then
	token="${logs_url##*t=}"
	token="${token%%[&#]*}"
	[ -n "$token" ] && mask "$token"
fi
output execution-id "$exec_id"
output logs-url "$logs_url"
output details-url "${details_url:-$logs_url}"
if [ "$(field .skipped)" = cooldown ]; then
	echo "Cooling down: reusing execution $exec_id (retry after $(field .retryAfterSec)s)."
elif [ "$(field .deduped)" = true ]; then
	echo "Already dispatched: execution $exec_id (same id)."
else
	echo "Accepted: execution $exec_id"
fi
[ -n "$logs_url" ] && echo "Logs: $logs_url"

[ "$mode" = await ] || exit 0

# --- await: follow the execution until it ends ----------------------------------------
[ -n "$token" ] || fail "await mode needs the execution's log token, and the 202 carried no logsUrl with one"
# logsUrl is <origin>/v1/executions/<id>/logs?t=…; the execution's status is the same
# path without /logs.
status_url="${logs_url%%\?*}"
status_url="${status_url%/logs}?t=$token"
deadline=$(($(date +%s) + $(jq -n "$timeout_minutes * 60 | ceil")))
view="$tmp/view.json"
last=""
status=""
conclusion=""
terminal_polls=0
warned=""
while :; do
	code="$(curl -sS -o "$view" -w '%{http_code}' --connect-timeout 10 --max-time 30 "$status_url" 2>"$tmp/curl.err")" || true
	[[ "$code" =~ ^[0-9]{3}$ ]] || code=000
	case "$code" in
	200)
		status="$(jq -r '.execution.status // empty' "$view")"
		check_status="$(jq -r '.check.status // empty' "$view")"
		conclusion="$(jq -r '.check.conclusion // empty' "$view")"
		case "$status" in
		queued)
			line="queued"
			q="$(jq -r '.check.summary // "" | select(startswith("Queued"))' "$view")"
			[ -n "$q" ] && line="queued: ${q#Queued — }"
			;;
		running | admitted | leased)
			step="$(jq -r '[.steps[]? | select(.status == "running") | .name] | last // empty' "$view")"
			line="running${step:+ step $step}"
			;;
		waiting) line="waiting (for time, child executions or an event; holds no sandbox)" ;;
		success | failure | cancelled | timed_out)
			terminal_polls=$((terminal_polls + 1))
			# The check-run is written just after the status; give it a few polls.
			if [ "$check_status" != completed ] && ((terminal_polls < 4)); then
				line="$last"
			else
				[ -n "$conclusion" ] || conclusion="$status"
				line="done: $conclusion"
			fi
			;;
		*) line="${status:-unknown}" ;;
		esac
		if [ "$line" != "$last" ]; then
			echo "[$(date -u +%H:%M:%S)] $line"
			last="$line"
		fi
		[[ "$line" == done:* ]] && break
		;;
	000 | 429 | 5??)
		if [ -z "$warned" ]; then
			annotate warning "polling the execution: HTTP $code; still trying until the timeout"
			warned=1
		fi
		;;
	*)
		fail "polling execution $exec_id answered HTTP $code: $(jq -r '.message // empty' "$view" 2>/dev/null)"
		;;
	esac
	if (($(date +%s) >= deadline)); then
		output status "$status"
		output conclusion ""
		output check-run-url "${details_url:-$logs_url}"
		fail "timed out after $timeout_minutes minute(s) (timeout-minutes) waiting for execution $exec_id, last seen ${status:-unknown}; it keeps running: $logs_url" "flare-dispatch: timeout"
	fi
	sleep "$poll_every"
done

check_run_id="$(jq -r '.execution.checkRunId // 0' "$view")"
check_url="$(jq -r '.check.detailsUrl // empty' "$view")"
if [[ "$check_run_id" =~ ^[1-9][0-9]*$ ]]; then
	check_url="${GITHUB_SERVER_URL:-https://github.com}/$repo/runs/$check_run_id"
fi
check_url="${check_url:-${details_url:-$logs_url}}"
output status "$status"
output conclusion "$conclusion"
output check-run-url "$check_url"

if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
	mark="✗"
	[ "$conclusion" = success ] && mark="✓"
	[ "$conclusion" = neutral ] && mark="⊘"
	{
		printf '### %s %s: %s\n\n' "$mark" "$label" "$conclusion"
		jq -r '.check.summary // empty' "$view"
		summary_md="$(jq -r '.summary.summaryMd? // empty' "$view" 2>/dev/null)"
		if [ -n "$summary_md" ]; then
			printf '\n%s\n' "$summary_md"
		elif [ "$(jq -r '.summary != null' "$view")" = true ]; then
			printf '\n<details><summary>output</summary>\n\n```json\n%s\n```\n\n</details>\n' "$(jq '.summary' "$view")"
		fi
		printf '\n| | |\n|---|---|\n| execution | `%s` |\n| status | %s |\n| check-run | %s |\n| logs | [%s](%s) |\n\n' \
			"$exec_id" "$status" "$check_url" "view logs" "$logs_url"
	} >>"$GITHUB_STEP_SUMMARY"
fi

# neutral is a run that decided to skip (RunSkipped): GitHub shows it as passing too.
if [ "$conclusion" != success ] && [ "$conclusion" != neutral ]; then
	title="$(jq -r '.check.title // empty' "$view")"
	fail "$label concluded $conclusion${title:+ ($title)}: see $check_url" "flare-dispatch: $conclusion"
fi
echo "$label concluded $conclusion."
