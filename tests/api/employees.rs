//! Employees: owned records, isolation between users, cascade with the owner.
