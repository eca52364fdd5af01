//! Cron schedules and time zones for the CronJob controller.
//!
//! [`Schedule::parse`] accepts what kube-controller-manager's parser (robfig/cron's
//! standard parser) accepts: five fields (minute, hour, day of month, month, day of week)
//! with `*`, `?`, lists, ranges, steps and the names `jan`–`dec` / `sun`–`sat`; the macros
//! `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly` and
//! `@every <duration>`. A `TZ=`/`CRON_TZ=` prefix is rejected as API validation rejects
//! it: `spec.timeZone` names the zone instead. [`Schedule::next`] finds the next fire time
//! in a zone with the same rules as upstream, including its daylight-saving behaviour: a
//! wall-clock time skipped by a spring-forward does not fire that day, one repeated by a
//! fall-back fires twice, and `*/1` style schedules keep firing every real minute.
//!
//! [`TimeZone`] reads compiled zone information (TZif, RFC 8536) including the POSIX rule
//! in its footer, which slim zone files rely on for all current and future dates.
//! [`ZoneInfoDir`] loads zones by IANA name from `/usr/share/zoneinfo`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};

use super::workload::WorkloadError;

const STAR: u64 = 1 << 63;

#[derive(Debug, Clone, Copy)]
struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// A parsed cron schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(Kind);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Fields(Fields),
    /// `@every`: a constant delay in whole seconds.
    Every(i64),
}

/// One bit per allowed value (bit `n` for value `n`), plus [`STAR`] for `*`/`?`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
}

fn bits(min: u32, max: u32, step: u32) -> u64 {
    (min..=max)
        .step_by(step.max(1) as usize)
        .fold(0, |acc, v| acc | (1u64 << v))
}

fn all(b: Bounds) -> u64 {
    bits(b.min, b.max, 1) | STAR
}

fn schedule_error(msg: String) -> WorkloadError {
    WorkloadError::Schedule(msg)
}

fn parse_number(s: &str, expr: &str) -> Result<u32, WorkloadError> {
    let n: i64 = s
        .parse()
        .map_err(|_| schedule_error(format!("failed to parse int from {s}: {expr}")))?;
    if n < 0 {
        return Err(schedule_error(format!(
            "negative number ({n}) not allowed: {expr}"
        )));
    }
    u32::try_from(n).map_err(|_| schedule_error(format!("number out of range: {expr}")))
}

fn parse_value(s: &str, b: Bounds, expr: &str) -> Result<u32, WorkloadError> {
    let lower = s.to_ascii_lowercase();
    match b.names.iter().position(|n| *n == lower) {
        Some(i) => Ok(i as u32 + if b.min == 1 { 1 } else { 0 }),
        None => parse_number(s, expr),
    }
}

fn parse_range(expr: &str, b: Bounds) -> Result<u64, WorkloadError> {
    let mut range_and_step = expr.split('/');
    let range = range_and_step.next().unwrap_or_default();
    let step = range_and_step.next();
    if range_and_step.next().is_some() {
        return Err(schedule_error(format!("too many slashes: {expr}")));
    }
    let mut low_high = range.split('-');
    let low = low_high.next().unwrap_or_default();
    let high = low_high.next();
    if low_high.next().is_some() {
        return Err(schedule_error(format!("too many hyphens: {expr}")));
    }
    let (start, mut end, mut extra) = if low == "*" || low == "?" {
        if high.is_some() {
            return Err(schedule_error(format!("too many hyphens: {expr}")));
        }
        (b.min, b.max, STAR)
    } else {
        let start = parse_value(low, b, expr)?;
        let end = match high {
            Some(h) => parse_value(h, b, expr)?,
            None => start,
        };
        (start, end, 0)
    };
    let step = match step {
        None => 1,
        Some(s) => {
            let step = parse_number(s, expr)?;
            // "N/step" means "N-max/step".
            if high.is_none() && extra == 0 {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
    };
    if start < b.min {
        return Err(schedule_error(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        )));
    }
    if end > b.max {
        return Err(schedule_error(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        )));
    }
    if start > end {
        return Err(schedule_error(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        )));
    }
    if step == 0 {
        return Err(schedule_error(format!(
            "step of range should be a positive number: {expr}"
        )));
    }
    Ok(bits(start, end, step) | extra)
}

fn parse_field(field: &str, b: Bounds) -> Result<u64, WorkloadError> {
    field
        .split(',')
        .try_fold(0, |acc, expr| Ok(acc | parse_range(expr, b)?))
}

/// A Go duration (`1h30m`, `90s`, `1.5h`) in whole seconds, rounded down.
fn parse_go_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        nanos += value * scale;
        rest = tail;
    }
    let secs = (nanos / 1e9).floor() as i64;
    Some(if neg { -secs } else { secs })
}

impl Schedule {
    /// Parse a CronJob schedule.
    pub fn parse(spec: &str) -> Result<Schedule, WorkloadError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(schedule_error("empty spec string".into()));
        }
        if spec.contains("TZ") {
            return Err(schedule_error(
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into(),
            ));
        }
        if spec.starts_with('@') {
            return Self::parse_descriptor(spec);
        }
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(schedule_error(format!(
                "expected exactly 5 fields, found {}: [{}]",
                fields.len(),
                fields.join(" ")
            )));
        }
        Ok(Schedule(Kind::Fields(Fields {
            minute: parse_field(fields[0], MINUTES)?,
            hour: parse_field(fields[1], HOURS)?,
            dom: parse_field(fields[2], DOM)?,
            month: parse_field(fields[3], MONTHS)?,
            dow: parse_field(fields[4], DOW)?,
        })))
    }

    fn parse_descriptor(spec: &str) -> Result<Schedule, WorkloadError> {
        let f = |minute, hour, dom, month, dow| {
            Ok(Schedule(Kind::Fields(Fields {
                minute,
                hour,
                dom,
                month,
                dow,
            })))
        };
        match spec {
            "@yearly" | "@annually" => f(1, 1, 1 << 1, 1 << 1, all(DOW)),
            "@monthly" => f(1, 1, 1 << 1, all(MONTHS), all(DOW)),
            "@weekly" => f(1, 1, all(DOM), all(MONTHS), 1),
            "@daily" | "@midnight" => f(1, 1, all(DOM), all(MONTHS), all(DOW)),
            "@hourly" => f(1, all(HOURS), all(DOM), all(MONTHS), all(DOW)),
            _ => match spec.strip_prefix("@every ") {
                Some(d) => {
                    let secs = parse_go_duration(d.trim()).ok_or_else(|| {
                        schedule_error(format!("failed to parse duration {spec}"))
                    })?;
                    Ok(Schedule(Kind::Every(secs.max(1))))
                }
                None => Err(schedule_error(format!("unrecognized descriptor: {spec}"))),
            },
        }
    }

    /// The first fire time strictly after `after` (to the second), evaluated on the wall
    /// clock of `zone`; `None` when nothing matches within five years.
    pub fn next(&self, after: DateTime<Utc>, zone: &TimeZone) -> Option<DateTime<Utc>> {
        match &self.0 {
            Kind::Every(secs) => DateTime::from_timestamp(after.timestamp().checked_add(*secs)?, 0),
            Kind::Fields(f) => f.next(after.timestamp().checked_add(1)?, zone),
        }
    }
}

/// A wall-clock reading of an instant in a zone.
struct Wall {
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    weekday: u32,
}

fn wall(t: i64, zone: &TimeZone) -> Option<Wall> {
    let local = DateTime::from_timestamp(t.checked_add(i64::from(zone.offset_at(t)))?, 0)?;
    let n = local.naive_utc();
    Some(Wall {
        year: n.year(),
        month: n.month(),
        day: n.day(),
        hour: n.hour(),
        minute: n.minute(),
        second: n.second(),
        weekday: n.weekday().num_days_from_sunday(),
    })
}

/// Go's `time.Date` in `zone`: fields may overflow (month 13, day 32) and normalize.
fn date(zone: &TimeZone, y: i32, mo: i64, d: i64, h: i64, mi: i64) -> Option<i64> {
    let m0 = mo - 1;
    let y = y.checked_add(i32::try_from(m0.div_euclid(12)).ok()?)?;
    let m = u32::try_from(m0.rem_euclid(12) + 1).ok()?;
    let first = NaiveDate::from_ymd_opt(y, m, 1)?
        .and_hms_opt(0, 0, 0)?
        .and_utc()
        .timestamp();
    let local = first + (d - 1) * 86_400 + h * 3600 + mi * 60;
    Some(zone.local_to_utc(local))
}

impl Fields {
    fn day_matches(&self, w: &Wall) -> bool {
        let dom = self.dom & (1 << w.day) != 0;
        let dow = self.dow & (1 << w.weekday) != 0;
        if self.dom & STAR != 0 || self.dow & STAR != 0 {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// robfig/cron's `SpecSchedule.Next`, starting at `t` (already the next second).
    fn next(&self, mut t: i64, zone: &TimeZone) -> Option<DateTime<Utc>> {
        let year_limit = wall(t, zone)?.year + 5;
        let mut added = false;
        'wrap: loop {
            let mut w = wall(t, zone)?;
            if w.year > year_limit {
                return None;
            }
            while self.month & (1 << w.month) == 0 {
                if !added {
                    added = true;
                    t = date(zone, w.year, i64::from(w.month), 1, 0, 0)?;
                    w = wall(t, zone)?;
                }
                t = date(
                    zone,
                    w.year,
                    i64::from(w.month) + 1,
                    i64::from(w.day),
                    i64::from(w.hour),
                    i64::from(w.minute),
                )?;
                w = wall(t, zone)?;
                if w.month == 1 {
                    continue 'wrap;
                }
            }
            while !self.day_matches(&w) {
                if !added {
                    added = true;
                    t = date(zone, w.year, i64::from(w.month), i64::from(w.day), 0, 0)?;
                    w = wall(t, zone)?;
                }
                t = date(
                    zone,
                    w.year,
                    i64::from(w.month),
                    i64::from(w.day) + 1,
                    i64::from(w.hour),
                    i64::from(w.minute),
                )?;
                w = wall(t, zone)?;
                // Midnight may not exist on a DST day: snap back to the day's start.
                if w.hour != 0 {
                    if w.hour > 12 {
                        t += i64::from(24 - w.hour) * 3600;
                    } else {
                        t -= i64::from(w.hour) * 3600;
                    }
                    w = wall(t, zone)?;
                }
                if w.day == 1 {
                    continue 'wrap;
                }
            }
            while self.hour & (1 << w.hour) == 0 {
                if !added {
                    added = true;
                    t = date(
                        zone,
                        w.year,
                        i64::from(w.month),
                        i64::from(w.day),
                        i64::from(w.hour),
                        0,
                    )?;
                }
                t += 3600;
                w = wall(t, zone)?;
                if w.hour == 0 {
                    continue 'wrap;
                }
            }
            while self.minute & (1 << w.minute) == 0 {
                if !added {
                    added = true;
                    t -= t.rem_euclid(60);
                }
                t += 60;
                w = wall(t, zone)?;
                if w.minute == 0 {
                    continue 'wrap;
                }
            }
            if w.second != 0 {
                // Schedules fire on second 0: move to the next minute and check again.
                added = true;
                t += i64::from(60 - w.second);
                continue 'wrap;
            }
            return DateTime::from_timestamp(t, 0);
        }
    }
}

// ---------------------------------------------------------------------------
// Time zones
// ---------------------------------------------------------------------------

/// How a POSIX TZ rule names a day of the year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuleDay {
    /// `Jn`: day 1–365, February 29 never counted.
    Julian(u32),
    /// `n`: zero-based day 0–365, February 29 counted.
    ZeroBased(u32),
    /// `Mm.w.d`: day `d` (0 = Sunday) of week `w` (5 = last) of month `m`.
    MonthWeekDay(u32, u32, u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DstRule {
    /// Seconds east of UTC while daylight saving time is in effect.
    offset: i32,
    start: RuleDay,
    /// Seconds after local midnight (standard time) the switch happens.
    start_time: i64,
    end: RuleDay,
    /// Seconds after local midnight (daylight time) the switch back happens.
    end_time: i64,
}

/// The POSIX TZ string of a TZif footer (`CET-1CEST,M3.5.0,M10.5.0/3`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PosixTz {
    std_offset: i32,
    dst: Option<DstRule>,
}

struct Cursor<'a>(&'a str);

impl Cursor<'_> {
    fn name(&mut self) -> Option<()> {
        if let Some(rest) = self.0.strip_prefix('<') {
            let end = rest.find('>')?;
            self.0 = &rest[end + 1..];
            return Some(());
        }
        let len = self
            .0
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(self.0.len());
        if len < 3 {
            return None;
        }
        self.0 = &self.0[len..];
        Some(())
    }

    fn number(&mut self) -> Option<i64> {
        let len = self
            .0
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(self.0.len());
        let n = self.0[..len].parse().ok()?;
        self.0 = &self.0[len..];
        Some(n)
    }

    /// `[+-]hh[:mm[:ss]]` in seconds.
    fn time(&mut self) -> Option<i64> {
        let sign = match self.0.as_bytes().first() {
            Some(b'-') => {
                self.0 = &self.0[1..];
                -1
            }
            Some(b'+') => {
                self.0 = &self.0[1..];
                1
            }
            _ => 1,
        };
        let mut secs = self.number()? * 3600;
        for scale in [60, 1] {
            match self.0.strip_prefix(':') {
                Some(rest) => {
                    self.0 = rest;
                    secs += self.number()? * scale;
                }
                None => break,
            }
        }
        Some(sign * secs)
    }

    fn day(&mut self) -> Option<RuleDay> {
        if let Some(rest) = self.0.strip_prefix('J') {
            self.0 = rest;
            let n = u32::try_from(self.number()?).ok()?;
            return (1..=365).contains(&n).then_some(RuleDay::Julian(n));
        }
        if let Some(rest) = self.0.strip_prefix('M') {
            self.0 = rest;
            let m = u32::try_from(self.number()?).ok()?;
            self.0 = self.0.strip_prefix('.')?;
            let w = u32::try_from(self.number()?).ok()?;
            self.0 = self.0.strip_prefix('.')?;
            let d = u32::try_from(self.number()?).ok()?;
            let ok = (1..=12).contains(&m) && (1..=5).contains(&w) && d <= 6;
            return ok.then_some(RuleDay::MonthWeekDay(m, w, d));
        }
        let n = u32::try_from(self.number()?).ok()?;
        (n <= 365).then_some(RuleDay::ZeroBased(n))
    }

    /// `,day[/time]` with the default switch time of 02:00.
    fn switch(&mut self) -> Option<(RuleDay, i64)> {
        self.0 = self.0.strip_prefix(',')?;
        let day = self.day()?;
        let time = match self.0.strip_prefix('/') {
            Some(rest) => {
                self.0 = rest;
                self.time()?
            }
            None => 7200,
        };
        Some((day, time))
    }
}

impl PosixTz {
    fn parse(s: &str) -> Option<PosixTz> {
        let mut c = Cursor(s);
        c.name()?;
        // POSIX offsets count hours west of UTC.
        let std_offset = i32::try_from(-c.time()?).ok()?;
        if c.0.is_empty() {
            return Some(PosixTz {
                std_offset,
                dst: None,
            });
        }
        c.name()?;
        let dst_offset = if c.0.is_empty() || c.0.starts_with(',') {
            std_offset + 3600
        } else {
            i32::try_from(-c.time()?).ok()?
        };
        let (start, start_time, end, end_time) = if c.0.is_empty() {
            // No rule: the US rules, as Go assumes.
            (
                RuleDay::MonthWeekDay(3, 2, 0),
                7200,
                RuleDay::MonthWeekDay(11, 1, 0),
                7200,
            )
        } else {
            let (s, st) = c.switch()?;
            let (e, et) = c.switch()?;
            (s, st, e, et)
        };
        if !c.0.is_empty() {
            return None;
        }
        Some(PosixTz {
            std_offset,
            dst: Some(DstRule {
                offset: dst_offset,
                start,
                start_time,
                end,
                end_time,
            }),
        })
    }

    /// Days since the Unix epoch of a rule day in `year`.
    fn day_of(year: i32, day: RuleDay) -> Option<i64> {
        let jan1 = NaiveDate::from_ymd_opt(year, 1, 1)?;
        let epoch = |d: NaiveDate| d.signed_duration_since(NaiveDate::default()).num_days();
        let leap = NaiveDate::from_ymd_opt(year, 2, 29).is_some();
        Some(match day {
            RuleDay::Julian(n) => {
                let mut d = i64::from(n) - 1;
                if leap && n >= 60 {
                    d += 1;
                }
                epoch(jan1) + d
            }
            RuleDay::ZeroBased(n) => epoch(jan1) + i64::from(n),
            RuleDay::MonthWeekDay(m, w, d) => {
                let first = NaiveDate::from_ymd_opt(year, m, 1)?;
                let wd = first.weekday().num_days_from_sunday();
                let mut day = 1 + (d + 7 - wd) % 7 + (w - 1) * 7;
                let len = if m == 12 {
                    31
                } else {
                    NaiveDate::from_ymd_opt(year, m + 1, 1)?.pred_opt()?.day()
                };
                while day > len {
                    day -= 7;
                }
                epoch(first) + i64::from(day) - 1
            }
        })
    }

    fn offset_at(&self, utc: i64) -> i32 {
        let Some(rule) = &self.dst else {
            return self.std_offset;
        };
        let year = DateTime::from_timestamp(utc + i64::from(self.std_offset), 0)
            .map(|d| d.year())
            .unwrap_or(1970);
        let bounds = Self::day_of(year, rule.start).zip(Self::day_of(year, rule.end));
        let Some((start_day, end_day)) = bounds else {
            return self.std_offset;
        };
        let start = start_day * 86_400 + rule.start_time - i64::from(self.std_offset);
        let end = end_day * 86_400 + rule.end_time - i64::from(rule.offset);
        let dst = if start < end {
            start <= utc && utc < end
        } else {
            !(end <= utc && utc < start)
        };
        if dst {
            rule.offset
        } else {
            self.std_offset
        }
    }
}

/// A time zone: UTC offsets over time, from a TZif file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZone {
    name: String,
    /// Transition instants (Unix seconds, ascending) and the offset from each on.
    transitions: Vec<(i64, i32)>,
    /// The offset before the first transition.
    initial: i32,
    /// The rule after the last transition.
    footer: Option<PosixTz>,
}

fn be_u32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

impl TimeZone {
    /// Coordinated Universal Time.
    pub fn utc() -> TimeZone {
        TimeZone {
            name: "UTC".into(),
            transitions: Vec::new(),
            initial: 0,
            footer: None,
        }
    }

    /// The zone's name as given to [`TimeZone::from_tzif`] or a [`ZoneSource`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Parse TZif data (RFC 8536): the 64-bit section of version 2+ files (the 32-bit
    /// one of version 1 files) and the POSIX rule in the footer.
    pub fn from_tzif(name: &str, data: &[u8]) -> Result<TimeZone, WorkloadError> {
        let bad = |reason: &str| WorkloadError::TimeZoneData {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        if data.get(..4) != Some(b"TZif") {
            return Err(bad("missing TZif magic"));
        }
        let version = data.get(4).copied().unwrap_or(0);
        let counts = |at: usize| -> Option<[usize; 6]> {
            let mut c = [0usize; 6];
            for (i, slot) in c.iter_mut().enumerate() {
                *slot = be_u32(data, at + 20 + i * 4)? as usize;
            }
            Some(c)
        };
        let [isut, isstd, leap, timecnt, typecnt, charcnt] =
            counts(0).ok_or_else(|| bad("truncated header"))?;
        let v1_len = timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut;
        let (at, time_size, [isut, isstd, leap, timecnt, typecnt, charcnt]) = if version >= b'2' {
            let second = 44 + v1_len;
            if data.get(second..second + 4) != Some(b"TZif") {
                return Err(bad("missing second header"));
            }
            (
                second + 44,
                8,
                counts(second).ok_or_else(|| bad("truncated header"))?,
            )
        } else {
            (44, 4, [isut, isstd, leap, timecnt, typecnt, charcnt])
        };
        if typecnt == 0 {
            return Err(bad("no local time types"));
        }
        let times_at = at;
        let idx_at = times_at + timecnt * time_size;
        let types_at = idx_at + timecnt;
        let end = types_at + typecnt * 6 + charcnt + leap * (time_size + 4) + isstd + isut;
        if data.len() < end {
            return Err(bad("truncated data"));
        }
        let offsets: Vec<i32> = (0..typecnt)
            .map(|i| {
                let b = &data[types_at + i * 6..types_at + i * 6 + 4];
                i32::from_be_bytes([b[0], b[1], b[2], b[3]])
            })
            .collect();
        let mut transitions = Vec::with_capacity(timecnt);
        for i in 0..timecnt {
            let t = &data[times_at + i * time_size..times_at + (i + 1) * time_size];
            let when = if time_size == 8 {
                i64::from_be_bytes([t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]])
            } else {
                i64::from(i32::from_be_bytes([t[0], t[1], t[2], t[3]]))
            };
            let idx = usize::from(data[idx_at + i]);
            let offset = *offsets.get(idx).ok_or_else(|| bad("bad type index"))?;
            transitions.push((when, offset));
        }
        let footer = if version >= b'2' {
            let rest = &data[end..];
            let text = std::str::from_utf8(rest).map_err(|_| bad("footer is not text"))?;
            let tz = text.trim_matches('\n');
            if tz.is_empty() {
                None
            } else {
                Some(PosixTz::parse(tz).ok_or_else(|| bad("unsupported footer rule"))?)
            }
        } else {
            None
        };
        Ok(TimeZone {
            name: name.to_string(),
            transitions,
            initial: offsets[0],
            footer,
        })
    }

    /// Seconds east of UTC in effect at the Unix time `utc`.
    pub fn offset_at(&self, utc: i64) -> i32 {
        match self.transitions.last() {
            Some((last, _)) if utc >= *last && self.footer.is_some() => {
                self.footer.as_ref().map_or(0, |f| f.offset_at(utc))
            }
            None => self
                .footer
                .as_ref()
                .map_or(self.initial, |f| f.offset_at(utc)),
            Some(_) => {
                let i = self.transitions.partition_point(|(t, _)| *t <= utc);
                if i == 0 {
                    self.initial
                } else {
                    self.transitions[i - 1].1
                }
            }
        }
    }

    /// The instant a wall-clock reading (as seconds since the epoch, read as if UTC)
    /// denotes, resolving skipped and repeated readings the way Go's `time.Date` does.
    fn local_to_utc(&self, local: i64) -> i64 {
        let guess = self.offset_at(local);
        let utc = local - i64::from(guess);
        let actual = self.offset_at(utc);
        if actual == guess {
            utc
        } else {
            local - i64::from(actual)
        }
    }

    /// `t` as RFC 3339 on this zone's wall clock (`Z` for a zero offset), as Go formats
    /// `time.RFC3339`.
    pub fn rfc3339(&self, t: DateTime<Utc>) -> String {
        let offset = self.offset_at(t.timestamp());
        let local = t.naive_utc() + chrono::Duration::seconds(i64::from(offset));
        let zone = if offset == 0 {
            "Z".to_string()
        } else {
            let sign = if offset < 0 { '-' } else { '+' };
            let a = offset.unsigned_abs();
            format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)
        };
        format!("{}{zone}", local.format("%Y-%m-%dT%H:%M:%S"))
    }
}

/// Where the CronJob planner gets time zones by IANA name.
pub trait ZoneSource {
    /// The zone named `name` (`UTC`, `Europe/Berlin`); [`WorkloadError::UnknownTimeZone`]
    /// when there is none.
    fn load(&self, name: &str) -> Result<TimeZone, WorkloadError>;
}

fn is_utc_name(name: &str) -> bool {
    matches!(name, "" | "UTC" | "Etc/UTC")
}

/// Zones from a zoneinfo directory (`/usr/share/zoneinfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneInfoDir {
    root: PathBuf,
}

impl ZoneInfoDir {
    /// The system's zoneinfo directory.
    pub fn system() -> Self {
        ZoneInfoDir {
            root: PathBuf::from("/usr/share/zoneinfo"),
        }
    }

    /// A zoneinfo tree rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ZoneInfoDir { root: root.into() }
    }
}

impl ZoneSource for ZoneInfoDir {
    fn load(&self, name: &str) -> Result<TimeZone, WorkloadError> {
        if is_utc_name(name) {
            return Ok(TimeZone::utc());
        }
        // Like Go's LoadLocation: a name never leaves the zoneinfo tree.
        let unsafe_name = name.starts_with('/')
            || name.contains('\\')
            || name.split('/').any(|c| c == ".." || c.is_empty());
        if unsafe_name || name == "Local" {
            return Err(WorkloadError::UnknownTimeZone(name.to_string()));
        }
        let data = std::fs::read(self.root.join(name))
            .map_err(|_| WorkloadError::UnknownTimeZone(name.to_string()))?;
        TimeZone::from_tzif(name, &data)
    }
}

/// An in-memory zone table (tests, or zones preloaded by the caller).
impl ZoneSource for BTreeMap<String, TimeZone> {
    fn load(&self, name: &str) -> Result<TimeZone, WorkloadError> {
        if is_utc_name(name) {
            return Ok(TimeZone::utc());
        }
        self.get(name)
            .cloned()
            .ok_or_else(|| WorkloadError::UnknownTimeZone(name.to_string()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A footer-only TZif v2 file for `rule`, like zic's slim output.
    pub(crate) fn tzif_with_rule(std_offset: i32, abbr: &str, rule: &str) -> Vec<u8> {
        let mut block = Vec::new();
        let header = |out: &mut Vec<u8>| {
            out.extend_from_slice(b"TZif2");
            out.extend_from_slice(&[0; 15]);
            for n in [0u32, 0, 0, 0, 1, abbr.len() as u32 + 1] {
                out.extend_from_slice(&n.to_be_bytes());
            }
        };
        let data = |out: &mut Vec<u8>| {
            out.extend_from_slice(&std_offset.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(abbr.as_bytes());
            out.push(0);
        };
        header(&mut block);
        data(&mut block);
        header(&mut block);
        data(&mut block);
        block.push(b'\n');
        block.extend_from_slice(rule.as_bytes());
        block.push(b'\n');
        block
    }

    pub(crate) fn berlin() -> TimeZone {
        TimeZone::from_tzif(
            "Europe/Berlin",
            &tzif_with_rule(3600, "CET", "CET-1CEST,M3.5.0,M10.5.0/3"),
        )
        .expect("valid zone")
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid timestamp")
            .with_timezone(&Utc)
    }

    fn fires(spec: &str, from: &str, n: usize, zone: &TimeZone) -> Vec<String> {
        let s = Schedule::parse(spec).expect("parses");
        let mut t = at(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = s.next(t, zone).expect("fires");
            out.push(zone.rfc3339(t));
        }
        out
    }

    #[test]
    fn fields_lists_ranges_steps_and_names() {
        let utc = TimeZone::utc();
        assert_eq!(
            fires("*/15 * * * *", "2025-01-01T10:07:30Z", 3, &utc),
            [
                "2025-01-01T10:15:00Z",
                "2025-01-01T10:30:00Z",
                "2025-01-01T10:45:00Z"
            ]
        );
        assert_eq!(
            fires("0 9-17/4 * * MON-fri", "2025-06-06T16:00:00Z", 3, &utc),
            [
                "2025-06-06T17:00:00Z",
                "2025-06-09T09:00:00Z",
                "2025-06-09T13:00:00Z"
            ]
        );
        assert_eq!(
            fires("5,35 0 1 jan,Jul ?", "2025-01-01T00:10:00Z", 2, &utc),
            ["2025-01-01T00:35:00Z", "2025-07-01T00:05:00Z"]
        );
        // Day of month and day of week both restricted: either matches.
        assert_eq!(
            fires("0 0 13 * 5", "2025-06-01T00:00:00Z", 3, &utc),
            [
                "2025-06-06T00:00:00Z",
                "2025-06-13T00:00:00Z",
                "2025-06-20T00:00:00Z"
            ]
        );
        // "N/step" runs from N to the end of the range.
        assert_eq!(
            fires("50/5 * * * *", "2025-01-01T10:00:00Z", 3, &utc),
            [
                "2025-01-01T10:50:00Z",
                "2025-01-01T10:55:00Z",
                "2025-01-01T11:50:00Z"
            ]
        );
    }

    #[test]
    fn macros_and_every() {
        let utc = TimeZone::utc();
        let from = "2025-05-14T12:34:56Z";
        assert_eq!(fires("@yearly", from, 1, &utc), ["2026-01-01T00:00:00Z"]);
        assert_eq!(fires("@annually", from, 1, &utc), ["2026-01-01T00:00:00Z"]);
        assert_eq!(fires("@monthly", from, 1, &utc), ["2025-06-01T00:00:00Z"]);
        assert_eq!(fires("@weekly", from, 1, &utc), ["2025-05-18T00:00:00Z"]);
        assert_eq!(fires("@daily", from, 1, &utc), ["2025-05-15T00:00:00Z"]);
        assert_eq!(fires("@midnight", from, 1, &utc), ["2025-05-15T00:00:00Z"]);
        assert_eq!(fires("@hourly", from, 1, &utc), ["2025-05-14T13:00:00Z"]);
        assert_eq!(
            fires("@every 1h30m", from, 1, &utc),
            ["2025-05-14T14:04:56Z"]
        );
    }

    #[test]
    fn invalid_schedules_are_rejected() {
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 7",
            "5-1 * * * *",
            "*/0 * * * *",
            "a * * * *",
            "-1 * * * *",
            "1/2/3 * * * *",
            "@reboot",
            "@every soon",
            "TZ=Europe/Berlin 0 9 * * *",
            "CRON_TZ=UTC 0 9 * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?} must not parse");
        }
        let err = Schedule::parse("CRON_TZ=UTC * * * * *").expect_err("rejected");
        assert_eq!(
            err.to_string(),
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
        );
    }

    #[test]
    fn impossible_dates_never_fire() {
        let s = Schedule::parse("0 0 30 2 *").expect("parses");
        assert_eq!(s.next(at("2025-01-01T00:00:00Z"), &TimeZone::utc()), None);
    }

    #[test]
    fn berlin_offsets_follow_the_eu_rule() {
        let z = berlin();
        assert_eq!(z.offset_at(at("2025-03-30T00:59:59Z").timestamp()), 3600);
        assert_eq!(z.offset_at(at("2025-03-30T01:00:00Z").timestamp()), 7200);
        assert_eq!(z.offset_at(at("2025-10-26T00:59:59Z").timestamp()), 7200);
        assert_eq!(z.offset_at(at("2025-10-26T01:00:00Z").timestamp()), 3600);
        assert_eq!(
            z.rfc3339(at("2025-07-01T10:00:00Z")),
            "2025-07-01T12:00:00+02:00"
        );
    }

    #[test]
    fn every_minute_keeps_firing_across_spring_forward() {
        assert_eq!(
            fires("*/1 * * * *", "2025-03-30T00:58:00Z", 4, &berlin()),
            [
                "2025-03-30T01:59:00+01:00",
                "2025-03-30T03:00:00+02:00",
                "2025-03-30T03:01:00+02:00",
                "2025-03-30T03:02:00+02:00"
            ]
        );
    }

    #[test]
    fn wall_clock_schedules_across_dst_changes() {
        let z = berlin();
        // 09:00 local stays 09:00 local: 08:00Z in winter, 07:00Z in summer.
        let t = fires("0 9 * * *", "2025-03-29T00:00:00Z", 2, &z);
        assert_eq!(
            t,
            ["2025-03-29T09:00:00+01:00", "2025-03-30T09:00:00+02:00"]
        );
        // 02:30 does not exist on the spring-forward day: skipped.
        assert_eq!(
            fires("30 2 * * *", "2025-03-29T00:00:00Z", 2, &z),
            ["2025-03-29T02:30:00+01:00", "2025-03-31T02:30:00+02:00"]
        );
        // 02:30 happens twice on the fall-back day, and fires twice (as upstream does).
        assert_eq!(
            fires("30 2 * * *", "2025-10-25T12:00:00Z", 3, &z),
            [
                "2025-10-26T02:30:00+02:00",
                "2025-10-26T02:30:00+01:00",
                "2025-10-27T02:30:00+01:00"
            ]
        );
    }

    #[test]
    fn system_zone_file_agrees_with_its_rule() {
        // The host's Europe/Berlin (a full TZif file with transitions) and the rule-only
        // zone must give the same offsets around the 2025 and 2026 changes.
        let zones = ZoneInfoDir::system();
        let system = zones.load("Europe/Berlin").expect("tzdata installed");
        let rule = berlin();
        let mut t = at("2025-03-01T00:00:00Z").timestamp();
        let end = at("2026-11-01T00:00:00Z").timestamp();
        while t < end {
            assert_eq!(system.offset_at(t), rule.offset_at(t), "at {t}");
            t += 1800;
        }
        assert_eq!(zones.load("UTC"), Ok(TimeZone::utc()));
        assert_eq!(
            zones.load("Mars/Olympus_Mons"),
            Err(WorkloadError::UnknownTimeZone("Mars/Olympus_Mons".into()))
        );
        assert!(zones.load("../../etc/passwd").is_err());
        assert!(zones.load("/etc/passwd").is_err());
    }

    #[test]
    fn posix_rules_parse() {
        let ny = PosixTz::parse("EST5EDT,M3.2.0,M11.1.0").expect("parses");
        assert_eq!(ny.std_offset, -18000);
        assert_eq!(ny.dst.as_ref().map(|d| d.offset), Some(-14400));
        // Southern hemisphere: DST spans the new year.
        let syd = PosixTz::parse("AEST-10AEDT,M10.1.0,M4.1.0/3").expect("parses");
        assert_eq!(syd.offset_at(at("2025-01-15T00:00:00Z").timestamp()), 39600);
        assert_eq!(syd.offset_at(at("2025-07-15T00:00:00Z").timestamp()), 36000);
        let fixed = PosixTz::parse("<+0530>-5:30").expect("parses");
        assert_eq!(fixed.std_offset, 19800);
        assert!(PosixTz::parse("X1").is_none());
        assert!(TimeZone::from_tzif("x", b"nope").is_err());
        assert!(TimeZone::from_tzif("x", b"TZif2\0\0\0").is_err());
    }
}
