-- The model that produced a result when the ML server fell back to another one (NULL: the
-- requested model itself).
ALTER TABLE deepfake_analyses ADD COLUMN model_used text;
