//! Checking an `OnCalendar=` expression before it is written into a timer:
//! `systemd-analyze calendar` when it is installed, otherwise a small
//! parser for the common forms, so a typo such as `every day at 3` is
//! refused at install time instead of giving a timer that never fires.

use std::process::Command;

/// Whether `expr` is a calendar expression systemd accepts. `Err` carries
/// the reason to show.
pub fn check(expr: &str) -> Result<(), String> {
    match Command::new("systemd-analyze")
        .args(["calendar", "--", expr])
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr);
            let why = why.lines().next().unwrap_or("").trim();
            Err(if why.is_empty() {
                "systemd-analyze refused it".to_string()
            } else {
                why.to_string()
            })
        }
        // Not installed (or not runnable): judge it ourselves.
        Err(_) => check_common(expr),
    }
}

/// The fallback: `minutely`/`hourly`/`daily`/`weekly`/`monthly`/`yearly`,
/// or `[WEEKDAYS] [DATE] TIME` with `DATE` as `Y-M-D` and `TIME` as
/// `H:M[:S]`, each field a number, a `*`, a `,` list or an `a..b` range.
pub fn check_common(expr: &str) -> Result<(), String> {
    const SHORTHANDS: [&str; 9] = [
        "minutely",
        "hourly",
        "daily",
        "weekly",
        "monthly",
        "yearly",
        "annually",
        "quarterly",
        "semiannually",
    ];
    let e = expr.trim();
    if SHORTHANDS.contains(&e.to_ascii_lowercase().as_str()) {
        return Ok(());
    }
    let bad = || {
        Err(format!(
            "not a calendar expression; use e.g. \"*-*-* 03:17:00\", \"Mon..Fri 20:00\" or \"daily\" (got {expr:?})"
        ))
    };
    let mut parts: Vec<&str> = e.split_whitespace().collect();
    if parts.is_empty() || parts.len() > 3 {
        return bad();
    }
    let Some(time) = parts.pop() else {
        return bad();
    };
    if !fields(time, ':', &[(0, 23), (0, 59), (0, 59)], 2) {
        return bad();
    }
    if let Some(last) = parts.last() {
        if last.contains('-') {
            if !fields(last, '-', &[(1970, 2199), (1, 12), (1, 31)], 3) {
                return bad();
            }
            parts.pop();
        }
    }
    match parts.as_slice() {
        [] => Ok(()),
        [days] if weekdays(days) => Ok(()),
        _ => bad(),
    }
}

fn fields(s: &str, sep: char, ranges: &[(u32, u32)], min: usize) -> bool {
    let f: Vec<&str> = s.split(sep).collect();
    f.len() >= min && f.len() <= ranges.len() && f.iter().zip(ranges).all(|(v, r)| field(v, *r))
}

fn field(v: &str, (lo, hi): (u32, u32)) -> bool {
    let num = |n: &str| n.parse::<u32>().is_ok_and(|n| n >= lo && n <= hi);
    let step = |p: &str| match p.split_once('/') {
        Some((base, step)) => {
            (base == "*" || num(base)) && step.parse::<u32>().is_ok_and(|s| s > 0)
        }
        None => p == "*" || num(p),
    };
    !v.is_empty()
        && v.split(',').all(|p| match p.split_once("..") {
            Some((a, b)) => num(a) && num(b),
            None => step(p),
        })
}

fn weekdays(s: &str) -> bool {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let day = |d: &str| {
        let d = d.to_ascii_lowercase();
        DAYS.iter()
            .any(|k| d.len() >= 3 && d.starts_with(k) && d.len() <= 9)
    };
    s.split(',').all(|p| match p.split_once("..") {
        Some((a, b)) => day(a) && day(b),
        None => day(p),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_forms_pass_and_prose_is_refused() {
        for ok in [
            "*-*-* 03:17:00",
            "daily",
            "03:17",
            "Mon..Fri 20:00",
            "Sat,Sun *-*-* 04:00:00",
            "*-*-1 00:00",
            "*-*-* *:0/15",
        ] {
            assert_eq!(check_common(ok), Ok(()), "{ok}");
        }
        for bad in [
            "every day at 3",
            "",
            "25:00",
            "*-13-* 03:00",
            "Funday 03:00",
            "3",
        ] {
            let e = check_common(bad).unwrap_err();
            assert!(e.contains("not a calendar expression"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_installed_checker_refuses_prose_too() {
        assert!(check("every day at 3").is_err());
        assert_eq!(check("*-*-* 03:17:00"), Ok(()));
    }
}
