//! Transactions: publishes and acks that take effect together on commit.

use std::time::Duration;

use amqp_wire::{TxCommit, TxRollback, TxSelect};

use crate::channel::Channel;
use crate::error::Result;

/// A transaction on a channel without publisher confirms.
///
/// Manual form: [`select`](Transaction::select), publish, then
/// [`commit`](Transaction::commit) or [`rollback`](Transaction::rollback).
/// Scoped form: [`begin`](Transaction::begin) returns a guard that rolls
/// back when dropped without [`commit`](TransactionScope::commit).
///
/// ```no_run
/// # async fn example(connection: pika::Connection) -> pika::Result<()> {
/// use pika::Message;
/// let channel = connection.channel().publisher_confirms(false).await?;
/// let scope = channel.transaction()?.begin().await?;
/// channel.default_exchange().publish(Message::new("one"), "tasks").await?;
/// channel.default_exchange().publish(Message::new("two"), "tasks").await?;
/// scope.commit().await?; // both or neither
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Transaction {
    channel: Channel,
}

impl Transaction {
    pub(crate) fn new(channel: Channel) -> Self {
        Transaction { channel }
    }

    /// Puts the channel in transaction mode (`tx.select`); once is enough
    /// for any number of transactions on it. Bounded by the channel's
    /// operation timeout.
    ///
    /// # Cancel safety
    /// Dropping the future only stops waiting: the select still happens.
    pub async fn select(&self) -> Result<()> {
        self.select_within(None).await
    }

    /// [`select`](Transaction::select) within `timeout`.
    ///
    /// # Cancel safety
    /// Dropping the future (or a timeout) only stops waiting: once sent,
    /// the select still happens.
    pub async fn select_within(&self, timeout: Option<Duration>) -> Result<()> {
        self.channel
            .call(TxSelect::default(), timeout)
            .await
            .map(drop)
    }

    /// Makes everything published and acked since the last commit or
    /// rollback take effect. Everything called on the channel before the
    /// commit is in it, and nothing called after. Bounded by the channel's
    /// operation timeout.
    ///
    /// # Cancel safety
    /// Dropping the future only stops waiting: the commit still happens
    /// (its outcome is then unknown to the caller).
    pub async fn commit(&self) -> Result<()> {
        self.commit_within(None).await
    }

    /// [`commit`](Transaction::commit) within `timeout`.
    ///
    /// # Cancel safety
    /// Dropping the future (or a timeout) only stops waiting: once sent,
    /// the commit still happens.
    pub async fn commit_within(&self, timeout: Option<Duration>) -> Result<()> {
        self.channel
            .call(TxCommit::default(), timeout)
            .await
            .map(drop)
    }

    /// Discards everything published and acked since the last commit or
    /// rollback. Bounded by the channel's operation timeout.
    ///
    /// # Cancel safety
    /// Dropping the future only stops waiting: the rollback still happens.
    pub async fn rollback(&self) -> Result<()> {
        self.rollback_within(None).await
    }

    /// [`rollback`](Transaction::rollback) within `timeout`.
    ///
    /// # Cancel safety
    /// Dropping the future (or a timeout) only stops waiting: once sent,
    /// the rollback still happens.
    pub async fn rollback_within(&self, timeout: Option<Duration>) -> Result<()> {
        self.channel
            .call(TxRollback::default(), timeout)
            .await
            .map(drop)
    }

    /// Selects transaction mode and returns a scope that rolls back unless
    /// committed.
    ///
    /// # Cancel safety
    /// Dropping the future only stops waiting: the select still happens.
    pub async fn begin(self) -> Result<TransactionScope> {
        self.select().await?;
        Ok(TransactionScope {
            transaction: Some(self),
        })
    }
}

/// A transaction that rolls back when dropped without
/// [`commit`](TransactionScope::commit).
///
/// The rollback on drop is queued on the channel without waiting, in the
/// channel's one ordered queue: it comes after everything called on the
/// channel before the drop and before anything called afterwards.
#[derive(Debug)]
pub struct TransactionScope {
    transaction: Option<Transaction>,
}

impl TransactionScope {
    /// Commits and ends the scope.
    ///
    /// # Cancel safety
    /// Dropping the future only stops waiting: the commit still happens.
    /// A future dropped before it is first polled drops the scope, which
    /// rolls back.
    pub async fn commit(mut self) -> Result<()> {
        let transaction = self.transaction.take().expect("scope not yet ended");
        transaction.commit().await
    }

    /// Rolls back and ends the scope.
    ///
    /// # Cancel safety
    /// Dropping the future only stops waiting: the rollback still happens.
    pub async fn rollback(mut self) -> Result<()> {
        let transaction = self.transaction.take().expect("scope not yet ended");
        transaction.rollback().await
    }
}

impl Drop for TransactionScope {
    fn drop(&mut self) {
        if let Some(transaction) = self.transaction.take() {
            if let Err(error) = transaction
                .channel
                .inner
                .call_detached(TxRollback::default())
            {
                tracing::warn!(%error, "could not roll back an abandoned transaction");
            }
        }
    }
}
