// Everything in core/nn, for convenience.
#pragma once
#include "core/nn/conv2d.h"
#include "core/nn/decoder_layer.h"
#include "core/nn/dropout.h"
#include "core/nn/embedding.h"
#include "core/nn/encoder_layer.h"
#include "core/nn/feed_forward.h"
#include "core/nn/init.h"
#include "core/nn/layer_norm.h"
#include "core/nn/linear.h"
#include "core/nn/module.h"
#include "core/nn/multi_head_attention.h"
#include "core/nn/positional_encoding.h"
