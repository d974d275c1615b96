"""Which prefetched message a worker thread takes first (Dramatiq's actor priority: lower first).

Each queue's consumer prefetches up to twice as many messages as the process has threads, and the
threads take them from one shared line. In a connect storm the line is full of Boot, Status and
StartTransaction batches that cost milliseconds an exchange; taken in arrival order, the MeterValues
and live events behind them waited seconds. So what operators watch live, and what keeps a site
under its grid limit, goes first; the chargers' state next; bookkeeping nobody watches by the
second after it. Nothing starves: every queue is consumed all the time, and a prefetched message
is taken as soon as no more urgent one waits.
"""

LIVE = 0  # the last hop of every live event (notify), and site limits (reallocate_sites)
METERING = 10  # MeterValues: the dashboards' live energy and power, prepaid budgets
CHARGER_STATE = 20  # boots, statuses, transactions starting and stopping
BOOKKEEPING = 30  # billing, the command audit, CMS changes, local-list syncs
OUTSIDE = 40  # integration events and webhooks: at least once, seconds late is fine
