// Policies that score without attention probabilities: KNorm, KeyDiff, Expected Attention, LagKV,
// each in its own header.
#pragma once

#include "heed/policy/expected_attention.hpp"
#include "heed/policy/key_diff.hpp"
#include "heed/policy/knorm.hpp"
#include "heed/policy/lagkv.hpp"
