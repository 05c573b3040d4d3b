-- The projector refuses an outcome whose record index is past its batch's record count
-- (batchline.outcomes is a topic anyone with access can write to). Called only for such
-- outcomes, so the set-based statement pays nothing for the others; the error fails the
-- window, which the projector then applies outcome by outcome, dead-lettering this one.
CREATE FUNCTION batchline_outcome_beyond_batch(batch_id text, record_index integer,
                                               record_count integer)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'outcome for record % of batch %, which has % records',
        record_index, batch_id, record_count
        USING ERRCODE = 'numeric_value_out_of_range';
END;
$$;
