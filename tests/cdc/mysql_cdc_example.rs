//! The binlog example (`extract_mysql_binlog`) run as a user runs it, against the project's own
//! MariaDB: the shared checks of [`cdc_example`](super::cdc_example).

use super::cdc_example::{self as ex, Backend};

#[tokio::test]
async fn each_run_lands_the_book_lines_since_the_last() {
    ex::each_run_lands_the_book_lines_since_the_last(Backend::MySql).await;
}

#[tokio::test]
async fn follow_commits_what_it_has_on_sigterm_and_exits_zero() {
    ex::follow_commits_what_it_has_on_sigterm_and_exits_zero(Backend::MySql).await;
}

#[tokio::test]
async fn kill_9_at_random_moments_loses_no_change() {
    ex::kill_9_at_random_moments_loses_no_change(Backend::MySql).await;
}
