pub mod category;
pub mod email_key;
pub mod employee;
pub mod one_time_link;
pub mod outbox;
pub mod product;
pub mod user;
