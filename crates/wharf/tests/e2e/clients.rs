//! Real registry clients against a real `wharf up`.
