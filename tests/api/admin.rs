//! Administration: listing, reading, role changes, blocking, deletion, bootstrap.
