//! `support/tickets.csv`: customer support tickets over the 180 days before the anchor.

use std::path::Path;

use protocol::registry::Dataset;

use crate::{ANCHOR, Column, CsvFile, DAY, HOUR, Rng, dataset, fixed, timestamp};

const COLUMNS: &[Column] = &[
    ("ticket_id", "INTEGER", "Unique ticket identifier"),
    ("created_at", "TIMESTAMP", "When the ticket was opened"),
    ("resolved_at", "TIMESTAMP", "When the ticket was resolved; NULL while open"),
    ("category", "VARCHAR", "Technical, Billing, Account or Product"),
    ("priority", "VARCHAR", "Low, Medium, High or Critical"),
    ("csat_score", "INTEGER", "Customer satisfaction 1-5; NULL when not surveyed or still open"),
    ("sla_met", "BOOLEAN", "Whether the ticket was (or, if open, still is) within its priority's SLA"),
    ("resolution_time_hours", "DOUBLE", "Hours from creation to resolution; NULL while open"),
    ("status", "VARCHAR", "Open, Resolved or Closed"),
    ("agent_id", "INTEGER", "Support agent identifier (101-140)"),
    ("channel", "VARCHAR", "Email, Chat or Phone"),
];

const BASE_ROWS: u64 = 6_000;
const PERIOD_DAYS: i64 = 180;

/// SLA in hours and mean resolution time in hours, per priority.
const PRIORITIES: &[(&str, u32, f64, f64)] =
    &[("Low", 35, 72.0, 50.0), ("Medium", 35, 48.0, 30.0), ("High", 20, 24.0, 16.0), ("Critical", 10, 8.0, 5.0)];

pub fn write(out: &Path, scale: u32) -> anyhow::Result<Dataset> {
    let mut rng = Rng::new(0x5099_0001);
    let mut csv = CsvFile::create(out, "support/tickets.csv", COLUMNS)?;
    let categories = [("Technical", 40), ("Billing", 25), ("Account", 20), ("Product", 15)];
    let channels = [("Email", 45), ("Chat", 35), ("Phone", 20)];
    let priority_weights: Vec<(usize, u32)> = PRIORITIES.iter().enumerate().map(|(i, p)| (i, p.1)).collect();
    let start = ANCHOR - PERIOD_DAYS * DAY;

    for n in 0..BASE_ROWS * u64::from(scale) {
        let ticket_id = 100_001 + n;
        let created = start + rng.below((PERIOD_DAYS * DAY) as u64) as i64;
        let category = *rng.weighted(&categories);
        let (priority, _, sla_hours, mean_hours) = PRIORITIES[*rng.weighted(&priority_weights)];
        let channel = *rng.weighted(&channels);
        let agent_id = rng.range(101, 140);

        let age_hours = (ANCHOR - created) as f64 / HOUR as f64;
        let hours = rng.normal(mean_hours, mean_hours * 0.6).max(0.1);
        let resolved_seconds = (hours * HOUR as f64).round() as i64;
        let open = rng.chance(if age_hours < 72.0 { 0.6 } else { 0.05 }) || created + resolved_seconds > ANCHOR;

        let (status, resolved_at, resolution, sla_met, csat) = if open {
            ("Open", String::new(), String::new(), age_hours <= sla_hours, String::new())
        } else {
            let status = if rng.chance(0.58) { "Resolved" } else { "Closed" };
            let hours = resolved_seconds as f64 / HOUR as f64;
            let met = hours <= sla_hours;
            let csat = if rng.chance(0.75) {
                let weights: &[(u8, u32)] = if met {
                    &[(5, 40), (4, 35), (3, 15), (2, 6), (1, 4)]
                } else {
                    &[(5, 8), (4, 20), (3, 30), (2, 24), (1, 18)]
                };
                rng.weighted(weights).to_string()
            } else {
                String::new()
            };
            (status, timestamp(created + resolved_seconds), fixed(hours, 2), met, csat)
        };
        csv.row(&[
            &ticket_id.to_string(),
            &timestamp(created),
            &resolved_at,
            category,
            priority,
            &csat,
            if sla_met { "true" } else { "false" },
            &resolution,
            status,
            &agent_id.to_string(),
            channel,
        ])?;
    }
    let file = csv.finish("Support tickets: one row per ticket", COLUMNS)?;
    Ok(dataset(
        "support",
        "Customer Support Tickets",
        "Support tickets over six months: categories, priorities, channels, resolution times, SLA compliance and satisfaction scores.",
        vec![file],
        &[
            "What's our SLA compliance rate by priority level?",
            "Show me average customer satisfaction score by category",
            "Which critical tickets have been open the longest?",
            "What's the average resolution time by category?",
            "How many tickets came in per channel each month?",
            "Which agents resolve tickets fastest?",
        ],
    ))
}
