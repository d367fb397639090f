// What the query functions run on: a pool, a pooled client (inside a transaction) or a plain client.
import type pg from 'pg';

export type Queryable = pg.Pool | pg.PoolClient | pg.ClientBase;
