//! Queue semantics against a real PostgreSQL (`DATABASE_URL`), each test in its own
//! database.

use std::time::{Duration, Instant};

use pgmq_notify::{QueueWaker, Wake};
use serde_json::json;
use tasker_shared::testing::TestDatabase;

#[tokio::test]
async fn send_read_hides_then_delete_removes() {
    let db = TestDatabase::create().await;
    let pool = &db.pool;
    pgmq_notify::create_queue(pool, "jobs").await.unwrap();
    pgmq_notify::create_queue(pool, "jobs").await.unwrap(); // idempotent

    let id = pgmq_notify::send(pool, "jobs", &json!({"n": 7})).await.unwrap();
    let batch = pgmq_notify::read(pool, "jobs", 30, 10).await.unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].msg_id, id);
    assert_eq!(batch[0].message, json!({"n": 7}));
    assert_eq!(batch[0].read_ct, 1);

    // Invisible while its visibility timeout runs.
    assert!(pgmq_notify::read(pool, "jobs", 30, 10).await.unwrap().is_empty());
    assert_eq!(pgmq_notify::queue_length(pool, "jobs").await.unwrap(), 1);

    // A consumer still working on it can extend its claim (not once it is gone).
    assert!(pgmq_notify::set_visibility_timeout(pool, "jobs", id, 0).await.unwrap());
    assert_eq!(pgmq_notify::read(pool, "jobs", 30, 10).await.unwrap()[0].read_ct, 2);

    assert!(pgmq_notify::delete(pool, "jobs", id).await.unwrap());
    assert!(!pgmq_notify::delete(pool, "jobs", id).await.unwrap());
    assert!(!pgmq_notify::set_visibility_timeout(pool, "jobs", id, 30).await.unwrap());
    assert_eq!(pgmq_notify::queue_length(pool, "jobs").await.unwrap(), 0);
    db.drop_database().await;
}

#[tokio::test]
async fn unacknowledged_message_reappears_after_visibility_timeout() {
    let db = TestDatabase::create().await;
    let pool = &db.pool;
    pgmq_notify::create_queue(pool, "jobs").await.unwrap();
    let id = pgmq_notify::send(pool, "jobs", &json!(1)).await.unwrap();
    let first = pgmq_notify::read(pool, "jobs", 1, 1).await.unwrap();
    assert_eq!(first[0].msg_id, id);

    // A consumer that died never deletes it: it must come back, read a second time.
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        let batch = pgmq_notify::read(pool, "jobs", 30, 1).await.unwrap();
        if let Some(message) = batch.into_iter().next() {
            break message;
        }
        assert!(Instant::now() < deadline, "message never reappeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(again.msg_id, id);
    assert_eq!(again.read_ct, 2);
    db.drop_database().await;
}

#[tokio::test]
async fn archive_moves_message_out_of_the_queue() {
    let db = TestDatabase::create().await;
    let pool = &db.pool;
    pgmq_notify::create_queue(pool, "jobs").await.unwrap();
    let id = pgmq_notify::send(pool, "jobs", &json!("bad")).await.unwrap();
    assert!(pgmq_notify::archive(pool, "jobs", id).await.unwrap());
    assert!(pgmq_notify::read(pool, "jobs", 1, 10).await.unwrap().is_empty());
    let archived: i64 = sqlx::query_scalar("SELECT count(*) FROM pgmq.a_jobs WHERE msg_id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(archived, 1);
    db.drop_database().await;
}

#[tokio::test]
async fn send_in_a_transaction_wakes_listener_only_at_commit() {
    let db = TestDatabase::create().await;
    let pool = &db.pool;
    pgmq_notify::create_queue(pool, "jobs").await.unwrap();
    pgmq_notify::create_queue(pool, "other").await.unwrap();
    let waker = QueueWaker::start(pool, &["jobs".to_string()]).await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    pgmq_notify::send(&mut *tx, "jobs", &json!(1)).await.unwrap();
    // Not committed: no wake-up, and the message is not visible.
    assert_eq!(waker.wait("jobs", Duration::from_millis(200)).await, Wake::TimedOut);
    assert!(pgmq_notify::read(pool, "jobs", 30, 1).await.unwrap().is_empty());
    tx.commit().await.unwrap();
    assert_eq!(waker.wait("jobs", Duration::from_secs(30)).await, Wake::Notified);
    assert_eq!(pgmq_notify::read(pool, "jobs", 30, 1).await.unwrap().len(), 1);

    // Messages on another queue do not wake this one.
    pgmq_notify::send(pool, "other", &json!(2)).await.unwrap();
    assert_eq!(waker.wait("jobs", Duration::from_millis(200)).await, Wake::TimedOut);
    drop(waker);
    db.drop_database().await;
}

#[tokio::test]
async fn delayed_message_is_invisible_until_due() {
    let db = TestDatabase::create().await;
    let pool = &db.pool;
    pgmq_notify::create_queue(pool, "jobs").await.unwrap();
    let sent = Instant::now();
    pgmq_notify::send_delayed(pool, "jobs", &json!(1), Duration::from_millis(300)).await.unwrap();
    assert!(pgmq_notify::read(pool, "jobs", 30, 1).await.unwrap().is_empty());
    loop {
        if !pgmq_notify::read(pool, "jobs", 30, 1).await.unwrap().is_empty() {
            break;
        }
        assert!(sent.elapsed() < Duration::from_secs(10), "delayed message never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sent.elapsed() >= Duration::from_millis(300));
    db.drop_database().await;
}
