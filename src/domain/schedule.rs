//! Schedules (recurring jobs) and queue controls: plain types and the calendar arithmetic.
//!
//! A calendar is a cron expression (5 fields, or 6 with seconds first, or a macro such as
//! `@daily`), read by the `croner` crate in an IANA time zone from `chrono-tz`, or a fixed
//! period `@every 30s` (read by `humantime`). Daylight-saving changes follow croner: a run
//! at a wall-clock time that does not exist that day (spring forward) happens at the first
//! instant after the gap; a time that happens twice (fall back) runs once, at the first;
//! jobs every few seconds, minutes or hours run on every real instant that matches.

use super::{bounded_text, FieldError, JobMeta, JobType, NewJob, Ts};
use chrono::{Duration, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A schedule's name: 1–200 characters of `[A-Za-z0-9._:-]` (the job type alphabet).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScheduleName(String);

impl ScheduleName {
    pub fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        JobType::parse(field, s).map(|t| Self(t.as_str().to_string()))
    }
    /// A name read back from the store (checked when it was written).
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScheduleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// When a schedule runs: parsed once from `cron` and `timezone`.
#[derive(Debug, Clone)]
pub enum Calendar {
    Cron { cron: Box<croner::Cron>, tz: Tz },
    Every(Duration),
}

/// The shortest `@every` period.
pub const MIN_EVERY: Duration = Duration::seconds(1);

impl Calendar {
    /// Reads a cron expression (or `@every <duration>`) in a time zone; each error names
    /// its field (`cron` or `timezone`).
    pub fn parse(cron: &str, timezone: &str) -> Result<Self, Vec<FieldError>> {
        let mut errs = Vec::new();
        let tz = match timezone.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                errs.push(FieldError::new(
                    "timezone",
                    "must be an IANA time zone name such as UTC or Europe/Berlin",
                ));
                None
            }
        };
        let text = cron.trim();
        let cal = if let Some(period) = text.strip_prefix("@every") {
            match humantime::parse_duration(period.trim()) {
                Ok(d) if period.starts_with(char::is_whitespace) => {
                    match Duration::from_std(d).ok().filter(|d| *d >= MIN_EVERY) {
                        Some(d) if d <= Duration::days(366) => Some(Calendar::Every(d)),
                        _ => {
                            errs.push(FieldError::new(
                                "cron",
                                "@every needs a period from 1s to 366d",
                            ));
                            None
                        }
                    }
                }
                _ => {
                    errs.push(FieldError::new(
                        "cron",
                        "@every needs a duration such as 30s, 5m or 1h30m",
                    ));
                    None
                }
            }
        } else {
            let parser = croner::parser::CronParser::builder()
                .seconds(croner::parser::Seconds::Optional)
                .build();
            match parser.parse(text) {
                Ok(c) => Some(Calendar::Cron {
                    cron: Box::new(c),
                    tz: tz.unwrap_or(Tz::UTC),
                }),
                Err(e) => {
                    errs.push(FieldError::new(
                        "cron",
                        format!("is not a cron expression: {e}"),
                    ));
                    None
                }
            }
        };
        match cal {
            Some(c) if errs.is_empty() => Ok(c),
            _ => Err(errs),
        }
    }

    /// The first run strictly after `t`. For `@every`, runs fall on `anchor` plus whole
    /// periods (the anchor is the schedule's previous run time, or its creation).
    pub fn next_after(&self, t: Ts, anchor: Ts) -> Option<Ts> {
        match self {
            Calendar::Cron { cron, tz } => cron
                .find_next_occurrence(&t.with_timezone(tz), false)
                .ok()
                .map(|n| n.with_timezone(&chrono::Utc)),
            Calendar::Every(p) => {
                if t < anchor {
                    return Some(anchor);
                }
                let periods = period_count(t - anchor, *p) + 1;
                Some(anchor + *p * periods)
            }
        }
    }

    /// The latest run at or before `t` (the one to enqueue after downtime).
    pub fn latest_at_or_before(&self, t: Ts, anchor: Ts) -> Option<Ts> {
        match self {
            Calendar::Cron { cron, tz } => cron
                .find_previous_occurrence(&t.with_timezone(tz), true)
                .ok()
                .map(|n| n.with_timezone(&chrono::Utc)),
            Calendar::Every(p) => (t >= anchor).then(|| anchor + *p * period_count(t - anchor, *p)),
        }
    }
}

/// How many whole periods fit in `span` (both positive).
fn period_count(span: Duration, p: Duration) -> i32 {
    let n = span.num_milliseconds() / p.num_milliseconds().max(1);
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// What a schedule does when a run comes while its previous run's job is unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// No new run while the previous run's job is `queued` or `leased` (counted skipped).
    Skip,
    Allow,
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Allow => "allow",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "skip" => Some(Overlap::Skip),
            "allow" => Some(Overlap::Allow),
            _ => None,
        }
    }
}

/// The job a schedule enqueues: an enqueue body without an id, a time or a key of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobTemplate {
    #[serde(rename = "type")]
    pub job_type: String,
    pub input: serde_json::Value,
    pub priority: i64,
    pub max_attempts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_cap_eur: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tag: Option<String>,
}

impl JobTemplate {
    /// The template of a parsed enqueue body (its id, time and key must be unset).
    pub fn from_new_job(j: NewJob) -> Self {
        Self {
            job_type: j.job_type.as_str().to_string(),
            input: j.input,
            priority: j.priority,
            max_attempts: j.max_attempts,
            code_version: j.meta.code_version,
            model_version: j.meta.model_version,
            config_hash: j.meta.config_hash,
            cost_cap_eur: j.meta.cost_cap_eur,
            budget_tag: j.meta.budget_tag,
        }
    }

    /// The job of one run; `key` is its idempotency key (None for a manual trigger).
    pub fn new_job(&self, key: Option<String>) -> Result<NewJob, FieldError> {
        Ok(NewJob {
            id: None,
            job_type: JobType::parse("job.type", &self.job_type)?,
            priority: self.priority,
            max_attempts: self.max_attempts,
            available_at: None,
            meta: JobMeta {
                idempotency_key: key,
                code_version: self.code_version.clone(),
                model_version: self.model_version.clone(),
                config_hash: self.config_hash.clone(),
                budget_tag: self.budget_tag.clone(),
                cost_cap_eur: self.cost_cap_eur.clone(),
            },
            input: self.input.clone(),
        })
    }
}

/// The idempotency key of a calendar run: the same on every process and node, so a run is
/// enqueued once however many of them see it due.
pub fn run_key(name: &ScheduleName, run_at: &Ts) -> String {
    format!("schedule:{}:{}", name, super::time::format(run_at))
}

/// What `PUT /v1/worker/schedules/{name}` asks for, checked.
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    pub name: ScheduleName,
    pub cron: String,
    pub timezone: String,
    pub calendar: Calendar,
    pub job: JobTemplate,
    pub enabled: bool,
    pub overlap: Overlap,
}

impl ScheduleSpec {
    /// The first run of a schedule written at `now` (None when disabled).
    pub fn first_run(&self, now: Ts) -> Option<Ts> {
        self.enabled
            .then(|| {
                self.calendar
                    .next_after(now, now + period_or_zero(&self.calendar))
            })
            .flatten()
    }

    /// The next run once this spec is written over `old` at `now`: a replacement that
    /// keeps the calendar of an enabled schedule keeps its next run (editing the job does
    /// not move or repeat a run); any other change starts the calendar from `now`.
    pub fn next_run(&self, old: Option<&Schedule>, now: Ts) -> Option<Ts> {
        match old {
            Some(o)
                if self.enabled
                    && o.enabled
                    && o.cron == self.cron
                    && o.timezone == self.timezone
                    && o.next_run_at.is_some() =>
            {
                o.next_run_at
            }
            _ => self.first_run(now),
        }
    }
}

/// `@every p` first runs one period after it is written.
fn period_or_zero(c: &Calendar) -> Duration {
    match c {
        Calendar::Every(p) => *p,
        Calendar::Cron { .. } => Duration::zero(),
    }
}

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub name: ScheduleName,
    pub cron: String,
    pub timezone: String,
    pub job: JobTemplate,
    pub enabled: bool,
    pub overlap: Overlap,
    pub next_run_at: Option<Ts>,
    pub last_run_at: Option<Ts>,
    pub last_job_id: Option<super::JobId>,
    pub runs_total: i64,
    pub skipped_total: i64,
    pub created_at: Ts,
    pub updated_at: Ts,
}

impl Schedule {
    pub fn calendar(&self) -> Result<Calendar, Vec<FieldError>> {
        Calendar::parse(&self.cron, &self.timezone)
    }

    /// The time from the next run to the one after it (an alert's measure of "late").
    pub fn period_at_next_run(&self) -> Option<Duration> {
        let next = self.next_run_at?;
        let after = self.calendar().ok()?.next_after(next, next)?;
        Some(after - next)
    }

    /// When a schedule found due at `now` runs: the latest calendar time at or before `now`
    /// (a single catch-up run after downtime), and the run after `now`.
    pub fn due_run(&self, now: Ts) -> Option<DueRun> {
        let next = self.next_run_at?;
        if !self.enabled || next > now {
            return None;
        }
        let cal = self.calendar().ok()?;
        let run_at = cal.latest_at_or_before(now, next).filter(|r| *r >= next)?;
        let following = cal.next_after(now, run_at)?;
        Some(DueRun {
            expected_next: next,
            run_at,
            next_run_at: following,
        })
    }
}

/// One run a maintenance tick found due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueRun {
    /// The `next_run_at` the tick read: the run is taken only if it is still that.
    pub expected_next: Ts,
    /// The calendar time of the run (its idempotency key).
    pub run_at: Ts,
    /// The run after this one.
    pub next_run_at: Ts,
}

/// What firing a due run did.
#[derive(Debug, Clone)]
pub enum Fired {
    /// The run's job was enqueued.
    Enqueued(Box<super::Job>),
    /// Skipped: the previous run's job was still queued or leased (`overlap: skip`).
    Skipped,
    /// Another process or node took the run first (or the schedule changed meanwhile).
    Taken,
}

/// A page of schedules by name.
#[derive(Debug, Clone)]
pub struct SchedulePage {
    pub items: Vec<Schedule>,
    pub next_after: Option<String>,
}

/// A job type's controls (`/v1/worker/queues/{type}/…`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueControl {
    pub paused: bool,
    pub max_leased: Option<i64>,
}

/// The largest `max_leased`.
pub const MAX_LEASED_LIMIT: i64 = 1_000_000;

/// Checks a `max_leased` value (`null` removes the limit).
pub fn max_leased(v: Option<i64>) -> Result<Option<i64>, FieldError> {
    match v {
        None => Ok(None),
        Some(n) => super::in_range("max_leased", n, 0, MAX_LEASED_LIMIT).map(Some),
    }
}

/// A text field of a schedule body, bounded.
pub fn cron_text(v: &str) -> Result<(), FieldError> {
    bounded_text("cron", v, 1, 200).map(|_| ())
}

/// Converts a UTC instant to a zone (tests and the CLI's display).
pub fn in_zone(t: Ts, tz: &str) -> Option<chrono::DateTime<Tz>> {
    tz.parse::<Tz>()
        .ok()
        .map(|z| z.from_utc_datetime(&t.naive_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::parse;

    fn t(s: &str) -> Ts {
        parse(s).expect("a timestamp")
    }

    fn runs(cron: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
        let cal = Calendar::parse(cron, tz).expect("valid");
        let mut at = t(from);
        let anchor = at;
        (0..n)
            .map(|_| {
                at = cal.next_after(at, anchor).expect("a next run");
                crate::domain::time::format(&at)
            })
            .collect()
    }

    #[test]
    fn five_and_six_fields_and_macros() {
        assert_eq!(
            runs("*/15 * * * *", "UTC", "2026-01-01T00:07:00Z", 2),
            ["2026-01-01T00:15:00.000Z", "2026-01-01T00:30:00.000Z"]
        );
        assert_eq!(
            runs("*/20 * * * * *", "UTC", "2026-01-01T00:00:05Z", 3),
            [
                "2026-01-01T00:00:20.000Z",
                "2026-01-01T00:00:40.000Z",
                "2026-01-01T00:01:00.000Z"
            ]
        );
        assert_eq!(
            runs("@hourly", "UTC", "2026-01-01T00:00:00Z", 1),
            ["2026-01-01T01:00:00.000Z"]
        );
        assert_eq!(
            runs("@daily", "UTC", "2026-01-01T10:00:00Z", 1),
            ["2026-01-02T00:00:00.000Z"]
        );
        // 2026-01-01 is a Thursday: @weekly is Sunday midnight.
        assert_eq!(
            runs("@weekly", "UTC", "2026-01-01T10:00:00Z", 1),
            ["2026-01-04T00:00:00.000Z"]
        );
        assert_eq!(
            runs("@monthly", "UTC", "2026-01-15T00:00:00Z", 1),
            ["2026-02-01T00:00:00.000Z"]
        );
        assert_eq!(
            runs("@yearly", "UTC", "2026-03-01T00:00:00Z", 1),
            ["2027-01-01T00:00:00.000Z"]
        );
        assert_eq!(
            runs("0 9 * * 1-5", "Europe/Berlin", "2026-01-02T12:00:00Z", 2),
            ["2026-01-05T08:00:00.000Z", "2026-01-06T08:00:00.000Z"]
        );
    }

    #[test]
    fn every_counts_whole_periods_from_its_anchor() {
        assert_eq!(
            runs("@every 30s", "UTC", "2026-01-01T00:00:00Z", 3),
            [
                "2026-01-01T00:00:30.000Z",
                "2026-01-01T00:01:00.000Z",
                "2026-01-01T00:01:30.000Z"
            ]
        );
        assert_eq!(
            runs("@every 1h30m", "UTC", "2026-01-01T00:00:00Z", 1),
            ["2026-01-01T01:30:00.000Z"]
        );
        let cal = Calendar::parse("@every 10s", "UTC").expect("valid");
        let anchor = t("2026-01-01T00:00:00Z");
        assert_eq!(
            cal.latest_at_or_before(t("2026-01-01T00:05:03Z"), anchor),
            Some(t("2026-01-01T00:05:00Z"))
        );
    }

    #[test]
    fn bad_expressions_and_zones_name_their_field() {
        for bad in [
            "",
            "* * *",
            "61 * * * *",
            "* * * * * * * *",
            "@sometimes",
            "@every",
            "@every 0s",
            "@every 500ms",
            "@everyday",
            "@every 1 fortnight",
        ] {
            let errs = Calendar::parse(bad, "UTC").expect_err(bad);
            assert_eq!(errs[0].field, "cron", "{bad}");
        }
        let errs = Calendar::parse("@daily", "Mars/Olympus").expect_err("a bad zone");
        assert_eq!(errs[0].field, "timezone");
        let errs = Calendar::parse("nope", "Nowhere").expect_err("both bad");
        assert_eq!(errs.len(), 2);
    }

    /// 2026-03-29: Berlin moves from 02:00 CET to 03:00 CEST; 02:30 does not exist.
    #[test]
    fn spring_forward_in_berlin() {
        // A daily 02:30 run happens at the first instant after the gap, 03:00 CEST.
        assert_eq!(
            runs("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 3),
            [
                "2026-03-29T01:00:00.000Z",
                "2026-03-30T00:30:00.000Z",
                "2026-03-31T00:30:00.000Z"
            ]
        );
        // A daily 09:00 run keeps 09:00 local: 08:00Z before, 07:00Z after.
        assert_eq!(
            runs("0 9 * * *", "Europe/Berlin", "2026-03-28T00:00:00Z", 2),
            ["2026-03-28T08:00:00.000Z", "2026-03-29T07:00:00.000Z"]
        );
        // Hourly runs: the day has 23 hours, and no run is made up for the missing one.
        let hourly = runs("0 * * * *", "Europe/Berlin", "2026-03-28T23:00:00Z", 4);
        assert_eq!(
            hourly,
            [
                "2026-03-29T00:00:00.000Z",
                "2026-03-29T01:00:00.000Z",
                "2026-03-29T02:00:00.000Z",
                "2026-03-29T03:00:00.000Z"
            ]
        );
    }

    /// 2026-10-25: Berlin goes from 03:00 CEST back to 02:00 CET; 02:30 happens twice.
    #[test]
    fn fall_back_in_berlin() {
        // A daily 02:30 run happens once, at the first 02:30 (CEST, 00:30Z).
        assert_eq!(
            runs("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00.000Z", "2026-10-26T01:30:00.000Z"]
        );
        // Hourly: every real hour runs, so the repeated 02:00 runs twice (25-hour day).
        let hourly = runs("0 * * * *", "Europe/Berlin", "2026-10-24T23:30:00Z", 4);
        assert_eq!(
            hourly,
            [
                "2026-10-25T00:00:00.000Z",
                "2026-10-25T01:00:00.000Z",
                "2026-10-25T02:00:00.000Z",
                "2026-10-25T03:00:00.000Z"
            ]
        );
    }

    fn schedule(cron: &str, next: &str) -> Schedule {
        let now = t("2026-01-01T00:00:00Z");
        Schedule {
            name: ScheduleName::from_stored("s".into()),
            cron: cron.into(),
            timezone: "UTC".into(),
            job: JobTemplate {
                job_type: "t".into(),
                input: serde_json::json!({}),
                priority: 5,
                max_attempts: 3,
                code_version: None,
                model_version: None,
                config_hash: None,
                cost_cap_eur: None,
                budget_tag: None,
            },
            enabled: true,
            overlap: Overlap::Skip,
            next_run_at: Some(t(next)),
            last_run_at: None,
            last_job_id: None,
            runs_total: 0,
            skipped_total: 0,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn after_downtime_only_the_latest_missed_run_is_due() {
        let s = schedule("0 * * * *", "2026-01-01T01:00:00Z");
        assert_eq!(s.due_run(t("2026-01-01T00:59:59Z")), None);
        let due = s.due_run(t("2026-01-01T05:20:00Z")).expect("due");
        assert_eq!(due.run_at, t("2026-01-01T05:00:00Z"));
        assert_eq!(due.next_run_at, t("2026-01-01T06:00:00Z"));
        assert_eq!(due.expected_next, t("2026-01-01T01:00:00Z"));
        let on_time = s.due_run(t("2026-01-01T01:00:00Z")).expect("due");
        assert_eq!(on_time.run_at, t("2026-01-01T01:00:00Z"));
        assert_eq!(on_time.next_run_at, t("2026-01-01T02:00:00Z"));

        let every = schedule("@every 10s", "2026-01-01T00:00:10Z");
        let due = every.due_run(t("2026-01-01T00:01:05Z")).expect("due");
        assert_eq!(due.run_at, t("2026-01-01T00:01:00Z"));
        assert_eq!(due.next_run_at, t("2026-01-01T00:01:10Z"));

        let mut off = schedule("0 * * * *", "2026-01-01T01:00:00Z");
        off.enabled = false;
        assert_eq!(off.due_run(t("2026-01-01T05:00:00Z")), None);
    }

    #[test]
    fn run_keys_name_the_schedule_and_the_run() {
        let n = ScheduleName::parse("name", "nightly.report").expect("valid");
        assert_eq!(
            run_key(&n, &t("2026-01-01T03:00:00+01:00")),
            "schedule:nightly.report:2026-01-01T02:00:00.000Z"
        );
        assert!(ScheduleName::parse("name", "bad name").is_err());
        assert!(ScheduleName::parse("name", "").is_err());
    }
}
