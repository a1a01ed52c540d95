//! Crash safety: SIGKILL the real process during pushes, restart it, and check that
//! acknowledged data is intact, no partial blob is visible, and interrupted uploads resume.
