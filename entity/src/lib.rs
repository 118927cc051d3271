pub mod category;
pub mod email_key;
pub mod employee;
pub mod product;
pub mod user;
