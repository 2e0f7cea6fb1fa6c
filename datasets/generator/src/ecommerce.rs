//! `ecommerce/`: orders, their line items and the product inventory, with
//! consistent keys (every item's order and product exist; an item's category is its
//! product's; an order's total is the sum of its discounted lines).

use std::path::Path;

use protocol::registry::Dataset;

use crate::{ANCHOR, Column, CsvFile, DAY, Rng, cents, dataset, date, fixed};

const ORDERS: &[Column] = &[
    ("order_id", "INTEGER", "Unique order identifier"),
    ("customer_id", "INTEGER", "Customer identifier"),
    ("order_date", "DATE", "Date the order was placed"),
    ("total", "DOUBLE", "Order value in dollars: the sum of its discounted lines"),
    ("status", "VARCHAR", "completed, returned or cancelled"),
    ("returned", "BOOLEAN", "Whether the order was returned"),
];

const ORDER_ITEMS: &[Column] = &[
    ("item_id", "INTEGER", "Unique line item identifier"),
    ("order_id", "INTEGER", "The order (orders.order_id)"),
    ("product_id", "INTEGER", "The product (inventory.product_id)"),
    ("category", "VARCHAR", "The product's category"),
    ("quantity", "INTEGER", "Units ordered"),
    ("price", "DOUBLE", "Unit price in dollars before discount"),
    ("discount", "INTEGER", "Discount in percent (0-20)"),
];

const INVENTORY: &[Column] = &[
    ("product_id", "INTEGER", "Unique product identifier"),
    ("name", "VARCHAR", "Product name"),
    ("category", "VARCHAR", "Electronics, Clothing, Home, Books or Toys"),
    ("stock", "INTEGER", "Units in stock"),
];

const BASE_ORDERS: u64 = 4_000;
const PRODUCTS: i64 = 500;
const PERIOD_DAYS: i64 = 365;

/// Category, price range in dollars, product nouns.
const CATEGORIES: &[(&str, f64, f64, &[&str])] = &[
    (
        "Electronics",
        15.0,
        600.0,
        &["Headphones", "Keyboard", "Monitor", "USB Cable", "Speaker", "Webcam", "Charger", "Mouse"],
    ),
    ("Clothing", 10.0, 150.0, &["T-Shirt", "Jacket", "Sneakers", "Scarf", "Jeans", "Hoodie", "Cap", "Socks"]),
    ("Home", 12.0, 300.0, &["Lamp", "Blender", "Cushion", "Kettle", "Rug", "Vase", "Toaster", "Shelf"]),
    ("Books", 8.0, 60.0, &["Novel", "Cookbook", "Atlas", "Biography", "Guide", "Anthology", "Workbook", "Journal"]),
    ("Toys", 8.0, 120.0, &["Puzzle", "Robot", "Board Game", "Plush Bear", "Kite", "Train Set", "Blocks", "Yo-Yo"]),
];
const ADJECTIVES: &[&str] =
    &["Classic", "Pro", "Mini", "Deluxe", "Eco", "Smart", "Retro", "Ultra", "Compact", "Premium", "Basic", "Travel"];

struct Product {
    id: i64,
    category: &'static str,
    price: f64,
}

pub fn write(out: &Path, scale: u32) -> anyhow::Result<Dataset> {
    let mut rng = Rng::new(0xEC0_2026);

    let mut inventory = CsvFile::create(out, "ecommerce/inventory.csv", INVENTORY)?;
    let mut products = Vec::new();
    for i in 0..PRODUCTS {
        let id = 201 + i;
        let (category, lo, hi, nouns) = CATEGORIES[(i as usize) % CATEGORIES.len()];
        let name = format!("{} {} {}", rng.pick(ADJECTIVES), rng.pick(nouns), 100 + i);
        let stock = if rng.chance(0.08) { rng.range(0, 19) } else { rng.range(20, 500) };
        let price = cents(lo + (hi - lo) * rng.unit().powi(2));
        inventory.row(&[&id.to_string(), &name, category, &stock.to_string()])?;
        products.push(Product { id, category, price });
    }

    let mut orders = CsvFile::create(out, "ecommerce/orders.csv", ORDERS)?;
    let mut items = CsvFile::create(out, "ecommerce/order_items.csv", ORDER_ITEMS)?;
    let customers = 800 * i64::from(scale);
    let start = ANCHOR - PERIOD_DAYS * DAY;
    let mut item_id = 10_001_u64;
    for n in 0..BASE_ORDERS * u64::from(scale) {
        let order_id = 1_001 + n;
        let customer_id = 2_001 + rng.below(customers as u64) as i64;
        let order_date = date(start + rng.below((PERIOD_DAYS * DAY) as u64) as i64);
        let lines = *rng.weighted(&[(1u32, 35), (2, 30), (3, 20), (4, 10), (5, 5)]);
        let mut total = 0.0;
        for _ in 0..lines {
            let product = rng.pick(&products);
            let quantity = *rng.weighted(&[(1u32, 70), (2, 20), (3, 10)]);
            let discount = *rng.weighted(&[(0u32, 60), (5, 15), (10, 15), (15, 5), (20, 5)]);
            total += cents(f64::from(quantity) * product.price * (1.0 - f64::from(discount) / 100.0));
            items.row(&[
                &item_id.to_string(),
                &order_id.to_string(),
                &product.id.to_string(),
                product.category,
                &quantity.to_string(),
                &fixed(product.price, 2),
                &discount.to_string(),
            ])?;
            item_id += 1;
        }
        let status = *rng.weighted(&[("completed", 85), ("returned", 8), ("cancelled", 7)]);
        orders.row(&[
            &order_id.to_string(),
            &customer_id.to_string(),
            &order_date,
            &fixed(cents(total), 2),
            status,
            if status == "returned" { "true" } else { "false" },
        ])?;
    }

    let files = vec![
        orders.finish("Orders: one row per order", ORDERS)?,
        items.finish("Order lines: one row per product in an order", ORDER_ITEMS)?,
        inventory.finish("Products and their stock", INVENTORY)?,
    ];
    Ok(dataset(
        "ecommerce",
        "E-commerce Orders",
        "A year of retail orders with their line items and the product inventory: sales, returns, discounts and stock.",
        files,
        &[
            "What are the top 10 products by revenue?",
            "Show me the return rate by category",
            "What's the average discount by product category?",
            "Which Electronics products have low stock (under 20)?",
            "Who are our top 20 customers by total spend?",
            "How did monthly revenue change over the year?",
        ],
    ))
}
