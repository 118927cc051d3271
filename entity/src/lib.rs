pub mod category;
pub mod employee;
pub mod product;
pub mod user;
