// engine/conn_policy.c: what each of the seed's callback codes does to a connection,
// and when the batch is over for a parked one — decisions alone, no connection.
#include <gtest/gtest.h>

extern "C" {
#include "conn_policy.h"
#include "smtpbulk.h"
}

namespace {
cpol fresh() { return cpol{}; }
}  // namespace

TEST(ConnPolicy, DefaultAndUnknownCodesChangeNothing) {
  for (int code : {(int)SMTPBULK_CB_DEFAULT, 0, 7, 105, 201, 204, -1}) {
    cpol p = fresh();
    EXPECT_EQ(cpol_apply(&p, code, 5), 0) << code;
    EXPECT_TRUE(cpol_takes_work(&p)) << code;
    EXPECT_EQ(cpol_when_idle(&p, 0), CPOL_IDLE_WORK) << code;
    EXPECT_EQ(cpol_after_close(&p), CPOL_NEXT_RECONNECT_LATER) << code;
    EXPECT_EQ(cpol_take_fresh_tls(&p), 0) << code;
  }
}

TEST(ConnPolicy, RemoveQuitsWhenIdleAndNeverComesBack) {
  cpol p = fresh();
  EXPECT_EQ(cpol_apply(&p, SMTPBULK_CB_REMOVE, 0), 0);
  EXPECT_FALSE(cpol_takes_work(&p));
  EXPECT_EQ(cpol_when_idle(&p, 0), CPOL_IDLE_QUIT);
  EXPECT_EQ(cpol_after_close(&p), CPOL_NEXT_GIVE_UP);
}

TEST(ConnPolicy, ReconnectAtTheEndOfTheBatch) {
  for (int code : {(int)SMTPBULK_CB_REMOVE_RECONNECT, (int)SMTPBULK_CB_REMOVE_RESTART}) {
    cpol p = fresh();
    EXPECT_EQ(cpol_apply(&p, code, 9), 1) << "parked just now";
    EXPECT_EQ(cpol_apply(&p, code, 10), 0) << "already parked: counted once";
    EXPECT_EQ(p.epoch, 9u) << "the epoch of the first park";
    EXPECT_FALSE(cpol_takes_work(&p));
    EXPECT_EQ(cpol_when_idle(&p, 0), CPOL_IDLE_QUIT);
    EXPECT_EQ(cpol_after_close(&p), CPOL_NEXT_WAIT_BATCH);
    EXPECT_EQ(cpol_take_fresh_tls(&p), code == SMTPBULK_CB_REMOVE_RESTART);
    EXPECT_EQ(cpol_take_fresh_tls(&p), 0) << "asking consumes it";
    EXPECT_EQ(cpol_unpark(&p), 1);
    EXPECT_EQ(cpol_unpark(&p), 0);
    EXPECT_TRUE(cpol_takes_work(&p));
  }
}

TEST(ConnPolicy, PauseStaysConnectedAndIdle) {
  cpol p = fresh();
  EXPECT_EQ(cpol_apply(&p, SMTPBULK_CB_PAUSE, 0), 1);
  EXPECT_FALSE(cpol_takes_work(&p));
  EXPECT_EQ(cpol_when_idle(&p, 0), CPOL_IDLE_WAIT);
  EXPECT_EQ(cpol_when_idle(&p, 1), CPOL_IDLE_QUIT) << "stopping: QUIT anyway";
  // A paused connection the server closes reconnects as usual (and stays paused).
  EXPECT_EQ(cpol_after_close(&p), CPOL_NEXT_RECONNECT_LATER);
}

TEST(ConnPolicy, ReconnectNowOnceAndRestartIsFresh) {
  for (int code : {(int)SMTPBULK_CB_RECONNECT, (int)SMTPBULK_CB_RESTART}) {
    cpol p = fresh();
    EXPECT_EQ(cpol_apply(&p, code, 0), 0);
    EXPECT_FALSE(cpol_takes_work(&p)) << "it ends now: nothing new meanwhile";
    EXPECT_EQ(cpol_after_close(&p), CPOL_NEXT_RECONNECT_NOW);
    EXPECT_EQ(cpol_after_close(&p), CPOL_NEXT_RECONNECT_LATER) << "carried out once";
    EXPECT_TRUE(cpol_takes_work(&p));
    EXPECT_EQ(cpol_take_fresh_tls(&p), code == SMTPBULK_CB_RESTART);
  }
}

TEST(ConnPolicy, TheBatchIsOverWhenTheQueueIsOrWasEmptyOrAllAreParked) {
  cpol run = fresh();
  EXPECT_FALSE(cpol_batch_over(&run, 1, 0, 0, 2)) << "not parked: nothing to end";
  cpol p = fresh();
  cpol_apply(&p, SMTPBULK_CB_PAUSE, 4);
  EXPECT_FALSE(cpol_batch_over(&p, 4, 10, 1, 2)) << "work waits, another takes it";
  EXPECT_TRUE(cpol_batch_over(&p, 4, 0, 1, 2)) << "the queue is empty";
  // The queue ran empty since it parked and filled again at once: the batch ended
  // all the same (the engine's epoch moved), so it comes back for the next one.
  EXPECT_TRUE(cpol_batch_over(&p, 5, 10, 1, 2));
  EXPECT_TRUE(cpol_batch_over(&p, 4, 10, 2, 2)) << "every live connection is parked";
  EXPECT_TRUE(cpol_batch_over(&p, 4, 10, 1, 1)) << "the others died";
}

TEST(ConnPolicy, HeldTakesNothingButStillQuitsWhenStopping) {
  cpol p = fresh();
  p.held = 1;  // a held event waits for the caller's code (event_queue_hold)
  EXPECT_FALSE(cpol_takes_work(&p));
  EXPECT_EQ(cpol_when_idle(&p, 0), CPOL_IDLE_WAIT);
  EXPECT_EQ(cpol_when_idle(&p, 1), CPOL_IDLE_QUIT);
  p.held = 0;
  EXPECT_TRUE(cpol_takes_work(&p));
  EXPECT_EQ(cpol_when_idle(&p, 0), CPOL_IDLE_WORK);
}
