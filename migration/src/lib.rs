pub use sea_orm_migration::prelude::*;

mod m20261123_000001_create_users;
mod m20261123_000002_create_resources;
mod m20261201_000003_security_stamp;
mod m20261206_000004_email_keys;
mod m20261206_000005_mail;
mod m20261206_000006_totp;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_create_users::Migration),
            Box::new(m20261123_000002_create_resources::Migration),
            Box::new(m20261201_000003_security_stamp::Migration),
            Box::new(m20261206_000004_email_keys::Migration),
            Box::new(m20261206_000005_mail::Migration),
            Box::new(m20261206_000006_totp::Migration),
        ]
    }
}
