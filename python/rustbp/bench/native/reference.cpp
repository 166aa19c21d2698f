// A plain native reference for rustbp at batch 1: an n-n-n network in straight loops over flat arrays,
// sigmoid on both layers, E = sum_k 1/2 (t_k - o_k)^2, a trained bias per neuron, plain SGD, one sample
// per step. Nothing clever: what a compiler makes of the textbook loops is the bar rustbp is held to.
//
//   forward   h = sigmoid(W1 x + b1), o = sigmoid(W2 h + b2)
//   backward  d2 = (o - t) o (1 - o), d1 = (W2^T d2) h (1 - h)   (W2 from before the step)
//   update    W2 -= lr d2 h^T, b2 -= lr d2, W1 -= lr d1 x^T, b1 -= lr d1
//
// Usage: reference STEPS EVERY N LR f64|f32 < numbers. stdin holds W1 (N x N, row j = hidden neuron j),
// b1, W2 (N x N, row k = output k), b2, x and t, in rustbp's layout, as decimal numbers. Prints the loss
// of every EVERY-th step and of the last as "loss STEP VALUE" (each before its update) and the loop's time
// as "ns_per_step VALUE", timed with a steady clock, printing excluded.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

template <typename R>
int run(long n, long steps, long every, R lr) {
    std::vector<R> w1(n * n), b1(n), w2(n * n), b2(n), x(n), t(n), h(n), o(n), d1(n), d2(n);
    for (std::vector<R>* v : {&w1, &b1, &w2, &b2, &x, &t}) {
        for (R& e : *v) {
            double d;
            if (scanf("%lf", &d) != 1) {
                fprintf(stderr, "reference: expected 2 N^2 + 4 N = %ld numbers on stdin\n", 2 * n * n + 4 * n);
                return 2;
            }
            e = R(d);
        }
    }
    std::vector<long> at;
    std::vector<double> losses;
    at.reserve(steps / every + 2);
    losses.reserve(steps / every + 2);
    auto t0 = std::chrono::steady_clock::now();
    for (long s = 0; s < steps; s++) {
        for (long j = 0; j < n; j++) {
            R z = b1[j];
            for (long i = 0; i < n; i++) z += w1[j * n + i] * x[i];
            h[j] = R(1) / (R(1) + std::exp(-z));
        }
        R loss = 0;
        for (long k = 0; k < n; k++) {
            R z = b2[k];
            for (long j = 0; j < n; j++) z += w2[k * n + j] * h[j];
            o[k] = R(1) / (R(1) + std::exp(-z));
            loss += R(0.5) * (t[k] - o[k]) * (t[k] - o[k]);
            d2[k] = (o[k] - t[k]) * o[k] * (R(1) - o[k]);
        }
        if (s % every == 0 || s == steps - 1) {
            at.push_back(s);
            losses.push_back(double(loss));
        }
        for (long j = 0; j < n; j++) d1[j] = 0;
        for (long k = 0; k < n; k++) {
            for (long j = 0; j < n; j++) {
                d1[j] += w2[k * n + j] * d2[k];
                w2[k * n + j] -= lr * d2[k] * h[j];
            }
            b2[k] -= lr * d2[k];
        }
        for (long j = 0; j < n; j++) {
            d1[j] *= h[j] * (R(1) - h[j]);
            for (long i = 0; i < n; i++) w1[j * n + i] -= lr * d1[j] * x[i];
            b1[j] -= lr * d1[j];
        }
    }
    auto t1 = std::chrono::steady_clock::now();
    for (size_t s = 0; s < at.size(); s++) printf("loss %ld %.17g\n", at[s], losses[s]);
    printf("ns_per_step %.6g\n", std::chrono::duration<double, std::nano>(t1 - t0).count() / steps);
    return 0;
}

int main(int argc, char** argv) {
    long steps = argc > 1 ? atol(argv[1]) : 0, every = argc > 2 ? atol(argv[2]) : 0, n = argc > 3 ? atol(argv[3]) : 0;
    double lr = argc > 4 ? atof(argv[4]) : 0;
    const char* dtype = argc > 5 ? argv[5] : "";
    bool f32 = strcmp(dtype, "f32") == 0;
    if (n < 1 || steps < 1 || every < 1 || !(f32 || strcmp(dtype, "f64") == 0)) {
        fprintf(stderr, "usage: reference STEPS EVERY N LR f64|f32 < numbers (STEPS, EVERY, N at least 1)\n");
        return 2;
    }
    return f32 ? run<float>(n, steps, every, float(lr)) : run<double>(n, steps, every, lr);
}
