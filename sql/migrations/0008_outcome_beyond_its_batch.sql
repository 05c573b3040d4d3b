-- The projector refuses an outcome past its batch: a record index beyond its record count,
-- or an attempt the batch has not started (batchline.outcomes is a topic anyone with access
-- can write to). Called only for such outcomes, so the set-based statement pays nothing for
-- the others; the error fails the window, which the projector then applies outcome by
-- outcome, dead-lettering this one.
CREATE FUNCTION batchline_outcome_beyond_batch(batch_id text, record_index integer,
                                               record_count integer, attempt integer,
                                               batch_attempt integer)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'outcome for record % (attempt %) of batch %, which has % records (attempt %)',
        record_index, attempt, batch_id, record_count, batch_attempt
        USING ERRCODE = 'numeric_value_out_of_range';
END;
$$;
