//! `sensors/sensors.csv`: readings of industrial sensors every two hours over the
//! 30 days before the anchor, with injected anomalies.

use std::path::Path;

use protocol::registry::Dataset;

use crate::{ANCHOR, Column, CsvFile, DAY, HOUR, Rng, dataset, fixed, timestamp};

const COLUMNS: &[Column] = &[
    ("sensor_id", "VARCHAR", "Sensor identifier"),
    ("timestamp", "TIMESTAMP", "When the reading was taken"),
    ("location", "VARCHAR", "Site: Plant A, Plant B, Warehouse or Lab"),
    ("zone", "VARCHAR", "Zone within the site: North, South, East or West"),
    ("temperature_c", "DOUBLE", "Temperature in degrees Celsius"),
    ("humidity_pct", "DOUBLE", "Relative humidity in percent"),
    ("pressure_hpa", "DOUBLE", "Air pressure in hectopascal"),
    ("vibration_mm_s", "DOUBLE", "Vibration velocity in mm/s"),
    ("anomaly_flag", "BOOLEAN", "Whether the reading is anomalous"),
    (
        "anomaly_type",
        "VARCHAR",
        "overheat, vibration_spike, humidity_spike, pressure_drop or sensor_fault; NULL when normal",
    ),
    ("battery_pct", "INTEGER", "Battery charge in percent"),
    ("status", "VARCHAR", "ok, warning or fault"),
];

const BASE_SENSORS: u64 = 30;
const PERIOD_DAYS: i64 = 30;
const INTERVAL: i64 = 2 * HOUR;

/// Site and its base temperature.
const LOCATIONS: &[(&str, f64)] = &[("Plant A", 26.0), ("Plant B", 24.0), ("Warehouse", 17.0), ("Lab", 21.0)];
const ZONES: &[&str] = &["North", "South", "East", "West"];
const ANOMALIES: &[(&str, u32)] =
    &[("overheat", 30), ("vibration_spike", 30), ("humidity_spike", 15), ("pressure_drop", 15), ("sensor_fault", 10)];

pub fn write(out: &Path, scale: u32) -> anyhow::Result<Dataset> {
    let mut rng = Rng::new(0x5E_0505);
    let mut csv = CsvFile::create(out, "sensors/sensors.csv", COLUMNS)?;
    let readings = PERIOD_DAYS * DAY / INTERVAL;
    let start = ANCHOR - PERIOD_DAYS * DAY;

    struct Sensor {
        id: String,
        location: &'static str,
        base_temp: f64,
        zone: &'static str,
        battery: f64,
        drain: f64,
    }
    let sensors: Vec<Sensor> = (0..BASE_SENSORS * u64::from(scale))
        .map(|i| {
            let (location, base_temp) = LOCATIONS[(i as usize) % LOCATIONS.len()];
            Sensor {
                id: format!("S-{:04}", i + 1),
                location,
                base_temp,
                zone: ZONES[rng.below(ZONES.len() as u64) as usize],
                battery: 70.0 + rng.unit() * 30.0,
                drain: 0.02 + rng.unit() * 0.2,
            }
        })
        .collect();

    // Reading by reading across all sensors, so the file is in time order.
    let mut batteries: Vec<f64> = sensors.iter().map(|s| s.battery).collect();
    for r in 0..readings {
        for (sensor, battery) in sensors.iter().zip(batteries.iter_mut()) {
            let at = start + r * INTERVAL + rng.below(600) as i64;
            let hour_of_day = (at.rem_euclid(DAY) / HOUR) as f64;
            let daily = (std::f64::consts::TAU * (hour_of_day - 9.0) / 24.0).sin() * 2.5;
            let mut temperature = sensor.base_temp + daily + rng.normal(0.0, 0.8);
            let mut humidity = (45.0 + rng.normal(0.0, 6.0)).clamp(15.0, 85.0);
            let mut pressure = 1013.0 + rng.normal(0.0, 3.0);
            let mut vibration = (2.0 + rng.normal(0.0, 0.6)).max(0.05);
            *battery = (*battery - sensor.drain).max(3.0);

            let anomaly = rng.chance(0.03).then(|| *rng.weighted(ANOMALIES));
            match anomaly {
                Some("overheat") => temperature += 15.0 + rng.unit() * 10.0,
                Some("vibration_spike") => vibration += 8.0 + rng.unit() * 12.0,
                Some("humidity_spike") => humidity = (humidity + 35.0).min(99.0),
                Some("pressure_drop") => pressure -= 25.0 + rng.unit() * 15.0,
                _ => {}
            }
            let status = match anomaly {
                Some("sensor_fault") => "fault",
                Some(_) => "warning",
                None if *battery < 15.0 => "warning",
                None => "ok",
            };
            csv.row(&[
                &sensor.id,
                &timestamp(at),
                sensor.location,
                sensor.zone,
                &fixed(temperature, 2),
                &fixed(humidity, 1),
                &fixed(pressure, 1),
                &fixed(vibration, 2),
                if anomaly.is_some() { "true" } else { "false" },
                anomaly.unwrap_or(""),
                &(*battery as i64).to_string(),
                status,
            ])?;
        }
    }
    let file = csv.finish("Sensor readings: one row per sensor every two hours", COLUMNS)?;
    Ok(dataset(
        "sensors",
        "Industrial Sensors",
        "A month of readings from industrial sensors across four sites: temperature, humidity, pressure, vibration, battery and flagged anomalies.",
        vec![file],
        &[
            "Which sensors reported the most anomalies?",
            "What is the average temperature per location per day?",
            "Show the anomaly types by zone",
            "Which sensors have a battery under 20%?",
            "When did vibration spikes happen at Plant A?",
        ],
    ))
}
